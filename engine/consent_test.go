package engine

import (
	"context"
	"testing"

	"crmsync/store"
)

// TestCRMConsentChangesAreInTheLedger: a change of a subscriber's subscription
// state that comes from the CRM — donotbulkemail on the record, a cs_subscription
// row — is appended to the consent ledger, dated when the CRM made it; an event
// that changes no state appends nothing.
func TestCRMConsentChangesAreInTheLedger(t *testing.T) {
	t.Parallel()
	r := newRules(t)
	ctx := context.Background()
	r.addSubscriber(r.group.ID, "a@example.de", nil)
	r.apply(webhookBody("Create", "contact", contactID, r.at(0), attrs{"emailaddress1": "a@example.de", "donotbulkemail": false}, nil))
	r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"donotbulkemail": true}, attrs{"emailaddress1": "a@example.de"}))
	r.apply(webhookBody("Update", "contact", contactID, r.at(1), attrs{"donotbulkemail": true}, attrs{"emailaddress1": "a@example.de"}))
	r.apply(webhookBody("Create", "cs_subscription", "5a5a5a5a-0000-4000-8000-000000000001", r.at(2),
		attrs{"cs_groupid": r.group.ID, "cs_subscribed": true, "cs_contactid": ref{"contact", contactID}}, nil))
	sub := r.sub(r.group.ID, "a@example.de")
	evs, _, err := r.st.ConsentHistory(ctx, "acme", sub.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d ledger entries, want 2: %+v", len(evs), evs)
	}
	off, on := evs[0], evs[1]
	if off.Action != store.ConsentUnsubscribed || off.Source != store.SourceCRM || !off.At.Equal(r.at(1)) || off.Detail != "contact "+contactID || off.Email != "a@example.de" {
		t.Errorf("donotbulkemail entry: %+v", off)
	}
	if on.Action != store.ConsentSubscribed || on.Source != store.SourceCRM || !on.At.Equal(r.at(2)) || on.Detail != "cs_subscription of contact "+contactID {
		t.Errorf("cs_subscription entry: %+v", on)
	}
}
