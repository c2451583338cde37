package dataverse

import (
	"testing"
	"time"
)

func TestEntityAccessors(t *testing.T) {
	t.Parallel()

	when := ms(1608007658000)
	e := &Entity{Attributes: map[string]any{
		"s":     "text",
		"b":     true,
		"i":     int64(42),
		"n":     7,
		"f":     2.5,
		"o":     OptionSetValue{Value: 3},
		"m":     Money{Value: 9.99},
		"t":     when,
		"r":     EntityReference{LogicalName: "account", ID: "a1"},
		"null":  nil,
		"multi": OptionSetValues{{Value: 1}},
	}}
	type result struct {
		Value any
		OK    bool
	}
	pair := func(v any, ok bool) result { return result{v, ok} }
	tests := []struct {
		name string
		got  result
		want result
	}{
		{"String", pair(e.String("s")), result{"text", true}},
		{"String of a bool", pair(e.String("b")), result{"", false}},
		{"String of null", pair(e.String("null")), result{"", false}},
		{"String missing", pair(e.String("nope")), result{"", false}},
		{"Bool", pair(e.Bool("b")), result{true, true}},
		{"Bool of a string", pair(e.Bool("s")), result{false, false}},
		{"Int", pair(e.Int("i")), result{int64(42), true}},
		{"Int of an int", pair(e.Int("n")), result{int64(7), true}},
		{"Int of an option", pair(e.Int("o")), result{int64(3), true}},
		{"Int of a float", pair(e.Int("f")), result{int64(0), false}},
		{"Float", pair(e.Float("f")), result{2.5, true}},
		{"Float of money", pair(e.Float("m")), result{9.99, true}},
		{"Float of an int64", pair(e.Float("i")), result{42.0, true}},
		{"Float of a string", pair(e.Float("s")), result{0.0, false}},
		{"Time", pair(e.Time("t")), result{when, true}},
		{"Time of a string", pair(e.Time("s")), result{time.Time{}, false}},
		{"Reference", pair(e.Reference("r")), result{EntityReference{LogicalName: "account", ID: "a1"}, true}},
		{"Reference of null", pair(e.Reference("null")), result{EntityReference{}, false}},
		{"Option", pair(e.Option("o")), result{3, true}},
		{"Option of an int64", pair(e.Option("i")), result{0, false}},
		{"Option of a multi-select", pair(e.Option("multi")), result{0, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			diff(t, tt.name, tt.want, tt.got)
		})
	}
}

func TestEntityAccessorsOnNil(t *testing.T) {
	t.Parallel()

	var e *Entity // e.g. a missing image: c.PreEntityImages["PreImage"]
	if _, ok := e.String("x"); ok {
		t.Error("String on nil Entity: ok = true")
	}
	if _, ok := e.Int("x"); ok {
		t.Error("Int on nil Entity: ok = true")
	}
	if _, ok := e.Reference("x"); ok {
		t.Error("Reference on nil Entity: ok = true")
	}
}
