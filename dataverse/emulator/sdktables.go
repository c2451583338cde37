package emulator

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The tables through which webhooks are registered (reference/dataverse.md §1,
// §7.6): serviceendpoint, sdkmessage and sdkmessagefilter (the platform's own,
// seeded and read-only), sdkmessageprocessingstep and
// sdkmessageprocessingstepimage. webhook.go reads them on every write to find the
// steps an event goes to.

// registrationTables is the schema of the registration tables; builtinTables
// appends it.
func registrationTables() []*table {
	return []*table{
		{
			logical: "serviceendpoint", set: "serviceendpoints", pk: "serviceendpointid", primaryName: "name", ownership: businessOwned,
			columns: []*column{
				text("name", 256).require(),
				memo("description", 2000),
				choice("contract", opts(1, "OneWay", 2, "Queue", 3, "Rest", 4, "TwoWay", 5, "Topic", 6, "Queue (Persistent)",
					7, "Event Hub", 8, "Webhook", 9, "Event Grid", 10, "Managed Data Lake", 11, "Container Storage")...).require(),
				text("url", 2000),
				choice("authtype", opts(0, "Not Specified", 1, "ACS", 2, "SAS Key", 3, "SAS Token", 4, "Webhook Key", 5, "Http Header",
					6, "Http Query String", 7, "Connection String", 8, "Access Key", 9, "Managed Identity")...),
				memo("authvalue", 2048).writeOnly(),
				yesNo("isauthvalueset", false).readOnly(),
				choice("messageformat", opts(1, "Binary XML", 2, "Json", 3, "Text XML")...),
				choice("userclaim", opts(1, "None", 2, "UserId", 3, "UserInfo")...).withDefault(int64(1)),
				choice("connectionmode", opts(1, "Normal", 2, "Federated")...).withDefault(int64(1)),
				choice("namespaceformat", opts(1, "Namespace Name", 2, "Namespace Address")...),
				text("namespaceaddress", 255),
				text("solutionnamespace", 160),
				text("path", 160),
				text("saskeyname", 256),
			},
			derive: func(vals map[string]any) { vals["isauthvalueset"] = vals["authvalue"] != nil },
			check:  checkServiceEndpoint,
		},
		{
			logical: "sdkmessage", set: "sdkmessages", pk: "sdkmessageid", primaryName: "name", ownership: businessOwned,
			noWrite: true, noDelete: true,
			columns: []*column{
				text("name", 256).require(),
				text("categoryname", 25),
				yesNo("isprivate", false),
				yesNo("isactive", true),
				yesNo("autotransact", true),
			},
		},
		{
			logical: "sdkmessagefilter", set: "sdkmessagefilters", pk: "sdkmessagefilterid", primaryName: "name", ownership: businessOwned,
			noWrite: true, noDelete: true,
			columns: []*column{
				text("name", 256),
				lookup("sdkmessageid", "sdkmessage").require(),
				{name: "primaryobjecttypecode", typ: typeEntityName},
				{name: "secondaryobjecttypecode", typ: typeEntityName},
				yesNo("iscustomprocessingstepallowed", true),
				yesNo("isvisible", true),
			},
		},
		{
			logical: "sdkmessageprocessingstep", set: "sdkmessageprocessingsteps", pk: "sdkmessageprocessingstepid", primaryName: "name",
			ownership: businessOwned, stateEnum: "SdkMessageProcessingStepState",
			columns: []*column{
				text("name", 256).require(),
				memo("description", 256),
				// eventhandler targets plugintype or serviceendpoint; the emulator runs no
				// plug-ins, so only the service endpoint's navigation property exists.
				multiLookup("eventhandler", "", "serviceendpoint").require().cascadeDelete(),
				lookup("sdkmessageid", "sdkmessage").require(),
				lookup("sdkmessagefilterid", "sdkmessagefilter"),
				choice("stage", opts(10, "Pre-validation", 20, "Pre-operation", 40, "Post-operation")...).require(),
				choice("mode", opts(0, "Synchronous", 1, "Asynchronous")...).withDefault(int64(0)),
				whole("rank").withDefault(int64(1)),
				choice("supporteddeployment", opts(0, "Server Only", 1, "Microsoft Dynamics 365 Client for Outlook Only", 2, "Both")...).withDefault(int64(0)),
				memo("filteringattributes", 100000),
				yesNo("asyncautodelete", false),
				memo("configuration", 1<<20),
				lookup("impersonatinguserid", "systemuser"),
			},
			states: []stateDef{
				{value: 0, label: "Enabled", defaultStatus: 1, statuses: opts(1, "Enabled")},
				{value: 1, label: "Disabled", defaultStatus: 2, statuses: opts(2, "Disabled")},
			},
			check: checkStep,
		},
		{
			logical: "sdkmessageprocessingstepimage", set: "sdkmessageprocessingstepimages", pk: "sdkmessageprocessingstepimageid", primaryName: "name",
			ownership: businessOwned,
			columns: []*column{
				text("name", 256),
				memo("description", 256),
				text("entityalias", 256).require(),
				choice("imagetype", opts(0, "PreImage", 1, "PostImage", 2, "Both")...).require(),
				text("messagepropertyname", 256).require(),
				memo("attributes", 100000),
				lookup("sdkmessageprocessingstepid", "sdkmessageprocessingstep").require().cascadeDelete(),
			},
			check: checkStepImage,
		},
	}
}

// contractWebhook is serviceendpoint.contract for a webhook; the emulator delivers
// to no other contract.
const contractWebhook = 8

// Webhook authentication types (serviceendpoint.authtype, §1.1).
const (
	authWebhookKey  = 4 // authvalue is the key, sent as ?code=
	authHTTPHeader  = 5 // authvalue is <settings>, sent as headers
	authQueryString = 6 // authvalue is <settings>, sent as query parameters
)

// checkServiceEndpoint holds a webhook endpoint to what the emulator can deliver
// to: an absolute http(s) URL on any port (real Dataverse takes only 80 and 443,
// contract.md lets the emulator take any), authtype 4, 5 or 6 with a usable
// authvalue, and a name no other endpoint has.
func checkServiceEndpoint(e *Emulator, vals map[string]any) error {
	name, _ := vals["name"].(string)
	id, _ := vals["serviceendpointid"].(string)
	for _, other := range e.rows["serviceendpoint"] {
		if n, _ := other.vals["name"].(string); other.id != id && strings.EqualFold(n, name) {
			return errorf(http.StatusPreconditionFailed, codeDuplicateRecord, "A service endpoint named '%s' already exists.", name)
		}
	}
	if contract, _ := vals["contract"].(int64); contract != contractWebhook {
		return nil
	}
	if vals["messageformat"] == nil {
		vals["messageformat"] = int64(2) // webhooks always post JSON
	}
	raw, _ := vals["url"].(string)
	u, err := url.Parse(raw)
	if raw == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The webhook endpoint URL '%s' is not an absolute http or https URL.", raw)
	}
	auth, _ := vals["authtype"].(int64)
	value, _ := vals["authvalue"].(string)
	switch auth {
	case authWebhookKey:
		if value == "" {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "A webhook with authentication type WebhookKey needs the key in authvalue.")
		}
	case authHTTPHeader, authQueryString:
		if _, err := parseAuthSettings(value); err != nil {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "The authvalue of a webhook with authentication type %d must be <settings><setting name=\"…\" value=\"…\"/></settings>: %s", auth, err)
		}
	default:
		return errorf(http.StatusBadRequest, codeInvalidArgument, "A webhook needs authtype 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString), not %d.", auth)
	}
	return nil
}

// authSetting is one name/value pair of an HttpHeader or HttpQueryString authvalue.
type authSetting struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// parseAuthSettings reads <settings><setting name=".." value=".."/></settings>, the
// form public automation code stores (§1.1, unverified in Microsoft's docs).
func parseAuthSettings(s string) ([]authSetting, error) {
	var doc struct {
		XMLName  xml.Name      `xml:"settings"`
		Settings []authSetting `xml:"setting"`
	}
	if err := xml.Unmarshal([]byte(s), &doc); err != nil {
		return nil, err
	}
	if len(doc.Settings) == 0 {
		return nil, errorf(http.StatusBadRequest, codeInvalidArgument, "no <setting> element")
	}
	for _, st := range doc.Settings {
		if st.Name == "" {
			return nil, errorf(http.StatusBadRequest, codeInvalidArgument, "a <setting> without a name")
		}
	}
	return doc.Settings, nil
}

// checkStep enforces the step rules the emulator knows: asynchronous steps run
// post-operation, and a filter belongs to the step's message.
func checkStep(e *Emulator, vals map[string]any) error {
	stage, _ := vals["stage"].(int64)
	if mode, _ := vals["mode"].(int64); mode == 1 && stage != 40 {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "An asynchronous step must be registered on stage 40 (PostOperation), not %d.", stage)
	}
	msg, _ := vals["sdkmessageid"].(ref)
	if f, ok := vals["sdkmessagefilterid"].(ref); ok {
		if frec := e.rows["sdkmessagefilter"][f.id]; frec != nil && frec.vals["sdkmessageid"] != msg {
			return errorf(http.StatusBadRequest, codeInvalidArgument, "The sdkmessagefilter %s does not belong to the sdkmessage %s.", f.id, msg.id)
		}
	}
	return nil
}

// checkStepImage enforces §7.6: no pre-image on Create, no post-image on Delete,
// and the message property the image is taken from must belong to the message.
func checkStepImage(e *Emulator, vals map[string]any) error {
	step, _ := vals["sdkmessageprocessingstepid"].(ref)
	srec := e.rows["sdkmessageprocessingstep"][step.id]
	if srec == nil {
		return nil // applyLocked has refused the bind already
	}
	message := e.messageNameLocked(srec)
	imageType, _ := vals["imagetype"].(int64)
	switch {
	case message == "Create" && imageType != imagePost:
		return errorf(http.StatusBadRequest, codeInvalidArgument, "A step on Create can have no pre-image: the row does not exist before.")
	case message == "Delete" && imageType != imagePre:
		return errorf(http.StatusBadRequest, codeInvalidArgument, "A step on Delete can have no post-image: the row does not exist after.")
	}
	prop, _ := vals["messagepropertyname"].(string)
	if want := imageProperties(message); want != nil && !slices.Contains(want, prop) {
		return errorf(http.StatusBadRequest, codeInvalidArgument, "The message property '%s' is not valid for images of %s; use %s.", prop, message, strings.Join(want, " or "))
	}
	return nil
}

// Image types (sdkmessageprocessingstepimage.imagetype).
const (
	imagePre  = 0
	imagePost = 1
	imageBoth = 2
)

// imageProperties are the message properties images of a message may name (§7.6);
// nil accepts any. "Id" for Create is what some public tools use (unverified).
func imageProperties(message string) []string {
	switch message {
	case "Create":
		return []string{"Target", "Id"}
	case "Update", "Delete", "Assign":
		return []string{"Target"}
	case "SetState", "SetStateDynamicEntity":
		return []string{"EntityMoniker"}
	}
	return nil
}

// messageNameLocked is the name of a step's sdkmessage.
func (e *Emulator) messageNameLocked(step *record) string {
	m, _ := step.vals["sdkmessageid"].(ref)
	if mrec := e.rows["sdkmessage"][m.id]; mrec != nil {
		name, _ := mrec.vals["name"].(string)
		return name
	}
	return ""
}

// seedMessages creates the sdkmessage rows of the messages crmsync registers on
// and an sdkmessagefilter for each message and table that raises it. Associate and
// Disassociate have no filter: their steps fire for every N:N relationship (§1).
// CreateMultiple and UpdateMultiple have filters for the tables marked bulk, which
// is how a client finds out that a table takes them (§7.1).
func (e *Emulator) seedMessages(put func(table, id string, vals map[string]any)) {
	var data, stateful, owned, bulk []string
	for _, t := range e.reg.tables {
		switch t.logical {
		case "systemuser", "businessunit", "serviceendpoint", "sdkmessage", "sdkmessagefilter",
			"sdkmessageprocessingstep", "sdkmessageprocessingstepimage":
			continue
		case "activityparty":
			continue // written only with its activity, whose events carry it
		}
		data = append(data, t.logical)
		if len(t.states) > 0 {
			stateful = append(stateful, t.logical)
		}
		if t.ownership == userOwned {
			owned = append(owned, t.logical)
		}
		if t.bulk {
			bulk = append(bulk, t.logical)
		}
	}
	type message struct {
		name, category string
		tables         []string
	}
	messages := []message{
		{"Create", "Create", data},
		{"Update", "Update", data},
		{"Delete", "Delete", data},
		{"SetState", "SetState", stateful},
		{"Assign", "Assign", owned},
		{"Associate", "Associate", nil},
		{"Disassociate", "Disassociate", nil},
		{"AddMember", "Marketing", []string{"list"}},
		{"AddListMembers", "Marketing", []string{"list"}},
		{"RemoveMember", "Marketing", []string{"list"}},
		{"CopyDynamicListToStatic", "Marketing", []string{"list"}},
		{actionAddItemCampaign, "Marketing", []string{"campaign"}},
		{actionAddItemCampaignActivity, "Marketing", []string{"campaignactivity"}},
		// The bulk messages (§7.1): a table supports them when it has these filters;
		// UpsertMultiple has none of its own.
		{"CreateMultiple", "Create", bulk},
		{"UpdateMultiple", "Update", bulk},
	}
	for _, api := range e.apis {
		// The solution's custom APIs: a message each, filtered by its bound table.
		var tables []string
		if api.boundTable != "" {
			tables = []string{api.boundTable}
		}
		messages = append(messages, message{api.uniqueName, "CustomAPI", tables})
	}
	for _, m := range messages {
		id := newID()
		put("sdkmessage", id, map[string]any{"name": m.name, "categoryname": m.category})
		for _, table := range m.tables {
			put("sdkmessagefilter", newID(), map[string]any{
				"name": m.name + " of " + table, "sdkmessageid": ref{"sdkmessage", id},
				"primaryobjecttypecode": table, "secondaryobjecttypecode": "none",
			})
		}
	}
}
