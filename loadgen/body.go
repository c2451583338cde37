package loadgen

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// Body returns a realistic RemoteExecutionContext for event seq of a run: a Create of
// the contact when it is the record's first event, an Update with a pre-image
// afterwards, shaped like Dataverse's asynchronous PostOperation webhooks (about
// 3 KB, like the captures in the reference).
func Body(run string, seq, record int, firstOfRecord bool, email string, modifiedOn time.Time) []byte {
	contactID := guid(run, "contact", record)
	opID := guid(run, "op", seq)
	ms := modifiedOn.UnixMilli()
	msg := "Update"
	target := fmt.Sprintf(`{"key":"lastname","value":"Load %d"},{"key":"contactid","value":"%s"},{"key":"modifiedon","value":"\/Date(%d)\/"},`+
		`{"key":"modifiedby","value":{"__type":"EntityReference:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Id":"a0bde583-0537-eb11-bf68-0022489b563d","KeyAttributes":[],"LogicalName":"systemuser","Name":null,"RowVersion":null}},{"key":"modifiedonbehalfby","value":null}`,
		seq, contactID, ms)
	pre := fmt.Sprintf(`[{"key":"PreImage","value":{"Attributes":[{"key":"emailaddress1","value":"%s"},{"key":"firstname","value":"Lena"},{"key":"contactid","value":"%s"}],"EntityState":null,"FormattedValues":[],"Id":"%s","KeyAttributes":[],"LogicalName":"contact","RelatedEntities":[],"RowVersion":null}}]`,
		email, contactID, contactID)
	if firstOfRecord {
		msg = "Create"
		target = fmt.Sprintf(`{"key":"firstname","value":"Lena"},{"key":"lastname","value":"Load %d"},{"key":"emailaddress1","value":"%s"},{"key":"donotbulkemail","value":false},`+
			`{"key":"ownerid","value":{"__type":"EntityReference:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Id":"a0bde583-0537-eb11-bf68-0022489b563d","KeyAttributes":[],"LogicalName":"systemuser","Name":null,"RowVersion":null}},`+
			`{"key":"statecode","value":{"__type":"OptionSetValue:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":0}},{"key":"statuscode","value":{"__type":"OptionSetValue:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":1}},`+
			`{"key":"createdon","value":"\/Date(%d)\/"},{"key":"modifiedon","value":"\/Date(%d)\/"},{"key":"contactid","value":"%s"}`,
			seq, email, ms, ms, contactID)
		pre = "[]"
	}
	return fmt.Appendf(nil, `{"BusinessUnitId":"c3ec0cc2-d836-eb11-bf68-0022489b563d","CorrelationId":"%s","Depth":1,`+
		`"InitiatingUserAzureActiveDirectoryObjectId":"00000000-0000-0000-0000-000000000000","InitiatingUserId":"a0bde583-0537-eb11-bf68-0022489b563d",`+
		`"InputParameters":[{"key":"Target","value":{"__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Attributes":[%s],"EntityState":null,"FormattedValues":[],"Id":"%s","KeyAttributes":[],"LogicalName":"contact","RelatedEntities":[],"RowVersion":null}}],`+
		`"IsExecutingOffline":false,"IsInTransaction":false,"IsOfflinePlayback":false,"IsolationMode":1,"MessageName":"%s","Mode":1,`+
		`"OperationCreatedOn":"\/Date(%d+0000)\/","OperationId":"%s","OrganizationId":"0ba4ce62-d2d6-4681-bc25-b3bfb695d4d6","OrganizationName":"org0ba4ce62",`+
		`"OutputParameters":[],"OwningExtension":{"Id":"2c28fe56-903e-eb11-a813-000d3ad9c2e1","KeyAttributes":[],"LogicalName":"sdkmessageprocessingstep","Name":"crmsync: %s of contact","RowVersion":null},`+
		`"ParentContext":null,"PostEntityImages":[{"key":"AsynchronousStepPrimaryName","value":{"Attributes":[{"key":"fullname","value":"Lena Load %d"},{"key":"contactid","value":"%s"}],"EntityState":null,"FormattedValues":[],"Id":"%s","KeyAttributes":[],"LogicalName":"contact","RelatedEntities":[],"RowVersion":null}}],`+
		`"PreEntityImages":%s,"PrimaryEntityId":"%s","PrimaryEntityName":"contact","RequestId":"%s","SecondaryEntityName":"none",`+
		`"SharedVariables":[{"key":"IsAutoTransact","value":true},{"key":"DefaultsAddedFlag","value":true}],"Stage":40,`+
		`"UserAzureActiveDirectoryObjectId":"00000000-0000-0000-0000-000000000000","UserId":"a0bde583-0537-eb11-bf68-0022489b563d"}`,
		guid(run, "corr", seq), target, contactID, msg, ms, opID, msg, seq, contactID, contactID, pre, contactID, guid(run, "req", seq))
}

// guid derives a stable GUID-shaped id, so a run's bodies are reproducible.
func guid(run, kind string, n int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%d", run, kind, n))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
