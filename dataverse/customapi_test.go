package dataverse

import "testing"

// TestCustomAPIsReachTheirWebhookSteps: crmsync's custom APIs (seeded as customapi
// rows) called as bound actions raise their messages for the registered steps, with
// the bound row as Target and the parameters by unique name (reference §7.5).
func TestCustomAPIsReachTheirWebhookSteps(t *testing.T) {
	t.Parallel()
	rt := newRoundTrip(t)
	ctx := t.Context()
	c := rt.app
	if id := one(t, c, "customapis", "customapiid", "uniquename eq 'cs_SendCampaign' and boundentitylogicalname eq 'campaignactivity'"); id == "" {
		t.Fatal("cs_SendCampaign is not defined")
	}
	ep, err := c.Create(ctx, "serviceendpoints", map[string]any{
		"name": "crmsync", "url": rt.receiverAt, "contract": 8, "authtype": 4, "authvalue": "the-webhook-key", "messageformat": 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ message, table string }{{"cs_SendCampaign", "campaignactivity"}, {"cs_SyncMarketingList", "list"}} {
		_, err := c.Create(ctx, "sdkmessageprocessingsteps", map[string]any{
			"name": "crmsync: " + s.message, "stage": StagePostOperation, "mode": ModeAsynchronous, "rank": 1, "supporteddeployment": 0,
			"eventhandler_serviceendpoint@odata.bind": Bind("serviceendpoints", ep),
			"sdkmessageid@odata.bind":                 Bind("sdkmessages", one(t, c, "sdkmessages", "sdkmessageid", "name eq '"+s.message+"'")),
			"sdkmessagefilterid@odata.bind": Bind("sdkmessagefilters", one(t, c, "sdkmessagefilters", "sdkmessagefilterid",
				"sdkmessageid/name eq '"+s.message+"' and primaryobjecttypecode eq '"+s.table+"'")),
		})
		if err != nil {
			t.Fatalf("step %s: %v", s.message, err)
		}
	}
	list, err := rt.user.Create(ctx, "lists", map[string]any{"listname": "Newsletter", "createdfromcode": 2})
	if err != nil {
		t.Fatal(err)
	}
	campaign, err := rt.user.Create(ctx, "campaigns", map[string]any{"name": "Winter"})
	if err != nil {
		t.Fatal(err)
	}
	activity, err := rt.user.Create(ctx, "campaignactivities", map[string]any{"subject": "Mailing",
		"regardingobjectid_campaign_campaignactivity@odata.bind": Bind("campaigns", campaign)})
	if err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	rt.receiver.take(t)

	if err := rt.user.InvokeBound(ctx, "lists", list, "cs_SyncMarketingList", nil); err != nil {
		t.Fatal(err)
	}
	if err := rt.user.InvokeBound(ctx, "campaignactivities", activity, "cs_SendCampaign", map[string]any{"Subject": "Hello", "SenderEmail": "news@example.de"}); err != nil {
		t.Fatal(err)
	}
	rt.flush(t)
	got, _ := rt.receiver.take(t)
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	byMsg := map[string]*ExecutionContext{}
	for _, ec := range got {
		byMsg[ec.MessageName] = ec
	}
	sync, send := byMsg["cs_SyncMarketingList"], byMsg["cs_SendCampaign"]
	if sync == nil || send == nil {
		t.Fatalf("messages %v", byMsg)
	}
	if ref, ok := sync.TargetReference(); !ok || ref.ID != list || ref.LogicalName != "list" || sync.PrimaryEntityName != "list" {
		t.Errorf("sync target %+v (%s)", ref, sync.PrimaryEntityName)
	}
	if ref, ok := send.TargetReference(); !ok || ref.ID != activity || send.InputParameters["Subject"] != "Hello" || send.InputParameters["SenderEmail"] != "news@example.de" {
		t.Errorf("send: target %+v, parameters %v", ref, send.InputParameters)
	}
	if _, ok := send.InputParameters["SenderName"]; ok {
		t.Error("an omitted optional parameter was sent")
	}

	// Unknown parameters and unbound names are refused, as Dataverse does.
	if err := rt.user.InvokeBound(ctx, "campaignactivities", activity, "cs_SendCampaign", map[string]any{"Colour": "red"}); err == nil {
		t.Error("an unknown parameter was accepted")
	}
	if err := rt.user.InvokeBound(ctx, "contacts", list, "cs_SyncMarketingList", nil); err == nil {
		t.Error("cs_SyncMarketingList was accepted on contacts")
	}
}
