package emulator

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	t.Parallel()
	reg, err := newRegistry(builtinTables())
	if err != nil {
		t.Fatal(err)
	}
	contact := reg.byName["contact"]
	day := func(d int) time.Time { return time.Date(2026, 11, d, 7, 0, 0, 0, time.UTC) }
	rows := map[string]*record{
		"anna":  {id: "00000000-0000-0000-0000-00000000000a", vals: map[string]any{"firstname": "Anna", "lastname": "Schmidt", "emailaddress1": "Anna.Schmidt@Example.de", "statecode": int64(0), "donotbulkemail": false, "modifiedon": day(1), "parentcustomerid": ref{"account", "6d81597f-0f9f-e711-8122-000d3aa2331c"}}},
		"bernd": {id: "00000000-0000-0000-0000-00000000000b", vals: map[string]any{"firstname": "Bernd", "lastname": "O'Brien", "emailaddress1": "bernd@example.com", "statecode": int64(1), "donotbulkemail": true, "modifiedon": day(15)}},
		"nil":   {id: "00000000-0000-0000-0000-00000000000c", vals: map[string]any{"statecode": int64(0), "modifiedon": day(29)}},
	}
	tests := []struct {
		filter string
		want   []string
	}{
		{"firstname eq 'anna'", []string{"anna"}},
		{"firstname eq 'ANNA'", []string{"anna"}},
		{"firstname ne 'anna'", []string{"bernd", "nil"}},
		{"firstname eq null", []string{"nil"}},
		{"firstname ne null", []string{"anna", "bernd"}},
		{"lastname eq 'O''Brien'", []string{"bernd"}},
		{"contains(emailaddress1,'example')", []string{"anna", "bernd"}},
		{"contains(emailaddress1, 'SCHMIDT')", []string{"anna"}},
		{"startswith(lastname,'o''b')", []string{"bernd"}},
		{"endswith(emailaddress1,'.de')", []string{"anna"}},
		{"not contains(emailaddress1,'.de')", []string{"bernd", "nil"}},
		{"statecode eq 0", []string{"anna", "nil"}},
		{"statecode ge 1", []string{"bernd"}},
		{"statecode lt 1 and firstname ne null", []string{"anna"}},
		{"statecode eq 1 or firstname eq 'Anna'", []string{"anna", "bernd"}},
		{"(statecode eq 1 or firstname eq 'Anna') and donotbulkemail eq false", []string{"anna"}},
		{"not (statecode eq 1)", []string{"anna", "nil"}},
		{"donotbulkemail", []string{"bernd"}},
		{"donotbulkemail eq true", []string{"bernd"}},
		{"modifiedon gt 2026-11-15T07:00:00Z", []string{"nil"}},
		{"modifiedon ge 2026-11-15T07:00:00Z", []string{"bernd", "nil"}},
		{"modifiedon lt 2026-11-15", []string{"anna"}},
		{"modifiedon le 2026-11-01T08:00:00+01:00", []string{"anna"}},
		{"_parentcustomerid_value eq 6D81597F-0F9F-E711-8122-000D3AA2331C", []string{"anna"}},
		{"_parentcustomerid_value eq null", []string{"bernd", "nil"}},
		{"contactid eq 00000000-0000-0000-0000-00000000000b", nil},
		{"firstname gt 'anna'", []string{"bernd"}},
		{"1 eq 1", []string{"anna", "bernd", "nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			t.Parallel()
			f, err := parseFilter(contact, tt.filter)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var got []string
			for name, rec := range rows {
				if f.eval(rec) {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("matched %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	t.Parallel()
	reg, err := newRegistry(builtinTables())
	if err != nil {
		t.Fatal(err)
	}
	contact := reg.byName["contact"]
	tests := []struct {
		filter, want string
	}{
		{"firstname eq", "Syntax error at position 12 in 'firstname eq'."},
		{"firstname eq 'open", "unterminated string literal"},
		{"nosuch eq 1", "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'."},
		{"parentcustomerid eq 6d81597f-0f9f-e711-8122-000d3aa2331c", "Could not find a property named 'parentcustomerid'"},
		{"firstname eq 5", "A binary operator with incompatible types was detected. Found operand types 'Edm.String' and 'Edm.Int32' for operator kind 'Equal'."},
		{"statecode eq '0'", "Found operand types 'Edm.Int32' and 'Edm.String'"},
		{"_parentcustomerid_value eq '6d81597f-0f9f-e711-8122-000d3aa2331c'", "'Edm.Guid' and 'Edm.String'"},
		{"contains(statecode,'1')", "No function signature for the function with name 'contains'"},
		{"tolower(firstname) eq 'a'", "An unknown function with name 'tolower'"},
		{"firstname eq 'a' and", "Syntax error"},
		{"(firstname eq 'a'", "')' or operator expected"},
		{"firstname", "Syntax error"},
		{"firstname eq 'a' xor lastname eq 'b'", "Syntax error"},
		{"firstname eq 'a' ; drop", "Syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			t.Parallel()
			_, err := parseFilter(contact, tt.filter)
			ae, ok := err.(*apiError)
			if !ok {
				t.Fatalf("err = %v, want an *apiError", err)
			}
			if ae.status != 400 {
				t.Errorf("status %d, want 400", ae.status)
			}
			if !strings.Contains(ae.message, tt.want) {
				t.Errorf("message %q, want it to contain %q", ae.message, tt.want)
			}
		})
	}
}

func TestCompareFold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"abc", "ABC", 0}, {"Ärger", "ärger", 0}, {"a", "B", -1}, {"b", "A", 1}, {"ab", "A", 1}, {"", "a", -1},
	}
	for _, tt := range tests {
		if got := compareFold(tt.a, tt.b); got != tt.want {
			t.Errorf("compareFold(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
