package engine

import (
	"slices"
	"strings"
	"testing"

	"crmsync/dataverse"
	"crmsync/store"
)

// TestRegistrationCoversEveryCRMStep: every Dataverse message a built-in step
// handles has a step in the registration, on its table (Associate and
// Disassociate on none), and the registration asks for nothing no step handles —
// so the registration and the engine cannot drift apart.
func TestRegistrationCoversEveryCRMStep(t *testing.T) {
	t.Parallel()
	internal := map[string]bool{EntitySubscriber: true, EntityGroup: true, EntityReaction: true}
	// SetState is deprecated: state changes arrive as Update with statecode and
	// statuscode in the filter. The engine still handles it for older registrations.
	notRegistered := map[string]bool{dataverse.MessageSetState: true, dataverse.MessageSetStateDynamicEntity: true}
	conn := &store.Connection{ID: "c1", FieldMappings: store.DefaultFieldMappings(store.RecipientContact)}
	registered := map[[2]string]bool{}
	for _, s := range desiredSteps(conn) {
		registered[[2]string{s.Message, s.Table}] = true
	}
	handled := map[[2]string]bool{}
	for key := range (&Config{Campaigns: &Campaigns{}}).defaultRegistry().steps {
		if internal[key.Entity] || notRegistered[key.Message] {
			continue
		}
		want := [2]string{key.Message, key.Entity}
		if key.Message == dataverse.MessageAssociate || key.Message == dataverse.MessageDisassociate {
			want[1] = ""
		}
		handled[want] = true
		if !registered[want] {
			t.Errorf("the engine handles %s of %s, but register does not ask Dataverse for it", key.Message, key.Entity)
		}
	}
	for k := range registered {
		if !handled[k] {
			t.Errorf("register asks for %s of %q, which no step handles", k[0], k[1])
		}
	}
}

// TestUpdateStepsFilterOnWhatTheRulesRead: an Update step fires for the mapped,
// consent and state columns, never for modifiedon (every update changes it), and
// its post-image carries what the rules read.
func TestUpdateStepsFilterOnWhatTheRulesRead(t *testing.T) {
	t.Parallel()
	conn := &store.Connection{ID: "c1", FieldMappings: append(store.DefaultFieldMappings(store.RecipientContact),
		store.FieldMapping{CRMEntity: "contact", CRMAttribute: "parentcustomerid", SubscriberField: "fields.company", Kind: store.MappingLookup, LookupPath: ptr("parentcustomerid.name")})}
	for _, s := range desiredSteps(conn) {
		if s.Message != dataverse.MessageUpdate || s.Table != "contact" {
			continue
		}
		for _, col := range []string{"emailaddress1", "firstname", "lastname", "donotbulkemail", "donotemail", "statecode", "statuscode", "parentcustomerid"} {
			if !slices.Contains(splitComma(s.FilteringAttributes), col) {
				t.Errorf("filtering attributes %q lack %s", s.FilteringAttributes, col)
			}
		}
		if slices.Contains(splitComma(s.FilteringAttributes), "modifiedon") || !slices.Contains(splitComma(s.Image), "modifiedon") {
			t.Errorf("filter %q / image %q: modifiedon belongs in the image only", s.FilteringAttributes, s.Image)
		}
		return
	}
	t.Fatal("no Update step of contact")
}

func splitComma(s string) []string { return strings.Split(s, ",") }
