package dataverse

import "testing"

func TestMerged(t *testing.T) {
	t.Parallel()

	const id = "6d81597f-0f9f-e711-8122-000d3aa2331c"
	tests := []struct {
		name string
		c    *ExecutionContext
		want *Entity
	}{
		{
			name: "update: pre-image, then changed columns, then post-image",
			c:    decodeFixture(t, "update_contact_preimage.json"),
			want: &Entity{LogicalName: "contact", ID: id, Attributes: map[string]any{
				"emailaddress1":      "new@example.de",
				"donotbulkemail":     true,
				"contactid":          id,
				"fullname":           "James Glynn",
				"modifiedon":         ms(1506384247000),
				"modifiedby":         EntityReference{LogicalName: "systemuser", ID: "75c2dd85-e89e-e711-8122-000d3aa2331c"},
				"modifiedonbehalfby": nil,
			}},
		},
		{
			name: "images in alias order, null in a later source wins",
			c: &ExecutionContext{
				PrimaryEntityName: "contact", PrimaryEntityID: "c1",
				InputParameters: map[string]any{"Target": &Entity{LogicalName: "contact", ID: "c1",
					Attributes: map[string]any{"b": nil}, FormattedValues: map[string]string{"b": ""}, RowVersion: "2"}},
				PreEntityImages: map[string]*Entity{
					"B": {Attributes: map[string]any{"a": "from B"}, KeyAttributes: map[string]any{"k": "v"}},
					"A": {Attributes: map[string]any{"a": "from A", "b": "old"}, FormattedValues: map[string]string{"b": "Old"}, RowVersion: "1"},
				},
				PostEntityImages: map[string]*Entity{"nil": nil},
			},
			want: &Entity{LogicalName: "contact", ID: "c1", RowVersion: "2",
				Attributes:      map[string]any{"a": "from B", "b": nil},
				FormattedValues: map[string]string{"b": ""},
				KeyAttributes:   map[string]any{"k": "v"}},
		},
		{
			name: "stripped body",
			c:    decodeFixture(t, "size_exceeded_update.json"),
			want: &Entity{LogicalName: "contact", ID: id, Attributes: map[string]any{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			diff(t, "Merged", tt.want, tt.c.Merged())
		})
	}
}

func TestNeedsReread(t *testing.T) {
	t.Parallel()

	marked := decodeFixture(t, "create_contact.json")
	marked.MarkSizeExceeded()
	tests := []struct {
		name string
		c    *ExecutionContext
		want bool
	}{
		{"create with Target", decodeFixture(t, "create_contact.json"), false},
		{"create marked by the header", marked, true},
		{"update without InputParameters", decodeFixture(t, "size_exceeded_update.json"), true},
		{"update with a reference Target", &ExecutionContext{MessageName: MessageUpdate,
			InputParameters: map[string]any{"Target": EntityReference{LogicalName: "contact", ID: "c1"}}}, true},
		{"update with a nil Target", &ExecutionContext{MessageName: MessageUpdate,
			InputParameters: map[string]any{"Target": (*Entity)(nil)}}, true},
		{"delete needs no Target entity", decodeFixture(t, "delete_contact.json"), false},
		{"assign carries no row", decodeFixture(t, "assign_contact.json"), true},
		{"custom message without parameters", &ExecutionContext{MessageName: "cs_Other"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			diff(t, "NeedsReread", tt.want, tt.c.NeedsReread())
		})
	}
}

func TestSizeExceededOnlyForKnownMessages(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		body string
		want bool
	}{
		{`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"c1"}`, true},
		{`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"c1","InputParameters":null}`, true},
		{`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"c1","InputParameters":[]}`, false},
		{`{"MessageName":"cs_Other","PrimaryEntityName":"list","PrimaryEntityId":"l1"}`, false},
	} {
		c, err := Decode([]byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.SizeExceeded != tt.want {
			t.Errorf("Decode(%s).SizeExceeded = %v, want %v", tt.body, c.SizeExceeded, tt.want)
		}
	}
}

func TestTargetReference(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		c      *ExecutionContext
		want   *EntityReference
		wantOK bool
	}{
		{"reference", &ExecutionContext{InputParameters: map[string]any{"Target": EntityReference{LogicalName: "contact", ID: "c1", Name: "Anna"}}},
			&EntityReference{LogicalName: "contact", ID: "c1", Name: "Anna"}, true},
		{"entity", &ExecutionContext{InputParameters: map[string]any{"Target": &Entity{LogicalName: "contact", ID: "c1"}}},
			&EntityReference{LogicalName: "contact", ID: "c1"}, true},
		{"entity without Id takes the primary id", &ExecutionContext{PrimaryEntityName: "contact", PrimaryEntityID: "c1",
			InputParameters: map[string]any{"Target": &Entity{LogicalName: "contact"}}},
			&EntityReference{LogicalName: "contact", ID: "c1"}, true},
		{"entity moniker", &ExecutionContext{InputParameters: map[string]any{"EntityMoniker": EntityReference{LogicalName: "lead", ID: "l1"}}},
			&EntityReference{LogicalName: "lead", ID: "l1"}, true},
		{"none", &ExecutionContext{InputParameters: map[string]any{"Target": "c1"}}, nil, false},
		{"stripped", &ExecutionContext{}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tt.c.TargetReference()
			diff(t, "TargetReference", []any{tt.want, tt.wantOK}, []any{got, ok})
		})
	}
}

func TestRelatedEntities(t *testing.T) {
	t.Parallel()

	a, b := EntityReference{LogicalName: "contact", ID: "a"}, EntityReference{LogicalName: "contact", ID: "b"}
	tests := []struct {
		name  string
		value any
		want  []EntityReference
	}{
		{"array", []any{a, "junk", b}, []EntityReference{a, b}},
		{"single reference", a, []EntityReference{a}},
		{"collection", &EntityCollection{Entities: []*Entity{{LogicalName: "contact", ID: "a"}, nil}}, []EntityReference{a}},
		{"absent", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &ExecutionContext{InputParameters: map[string]any{"RelatedEntities": tt.value}}
			diff(t, "RelatedEntities", tt.want, c.RelatedEntities())
		})
	}
}
