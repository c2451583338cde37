// cs_emscommands.js: the command-bar buttons of the crmsync solution.
//
// "Send eMS campaign" (campaign activity form) and "Synchronize with eMS" (marketing
// list form) each call their custom API bound to the open record through
// Xrm.WebApi.online.execute, as the signed-in user. Dataverse hands the message to
// crmsync through the asynchronous webhook step `crmsync register` adds, so the call
// returns as soon as the request is queued; the dialog says so.
//
// The ribbon passes the form context (CrmParameter PrimaryControl). Other scripts may
// call CrmSync.sendCampaign(formContext, {Subject: "…"}) with any of the custom API's
// optional parameters; the button sends none, so crmsync uses the activity's subject
// and the connection's sender.
var CrmSync = window.CrmSync || {};

(function (ns) {
    "use strict";

    // The custom APIs, their bound tables and their String parameters, as
    // customapis/<uniquename>/ in the solution defines them.
    var sendCampaign = {
        operationName: "cs_SendCampaign",
        entityType: "campaignactivity",
        parameters: ["Subject", "SenderName", "SenderEmail", "CampaignSendId"]
    };
    var syncMarketingList = {
        operationName: "cs_SyncMarketingList",
        entityType: "list",
        parameters: []
    };

    // request builds the bound action request Xrm.WebApi.online.execute takes: the
    // bound row as the entity parameter, and the parameters that have a value.
    function request(api, id, values) {
        var parameterTypes = {
            entity: { typeName: "mscrm." + api.entityType, structuralProperty: 5 }
        };
        var req = { entity: { entityType: api.entityType, id: id } };
        api.parameters.forEach(function (name) {
            var value = values && values[name];
            if (typeof value === "string" && value !== "") {
                req[name] = value;
                parameterTypes[name] = { typeName: "Edm.String", structuralProperty: 1 };
            }
        });
        req.getMetadata = function () {
            return {
                boundParameter: "entity",
                operationType: 0, // action
                operationName: api.operationName,
                parameterTypes: parameterTypes
            };
        };
        return req;
    }

    // run calls the custom API for the form's record and shows the outcome.
    function run(formContext, api, values, title, done) {
        var id = formContext.data.entity.getId();
        if (!id || formContext.data.entity.getIsDirty()) {
            Xrm.Navigation.openAlertDialog({ title: title, text: "Save the record first." });
            return;
        }
        Xrm.Utility.showProgressIndicator(title + "…");
        Xrm.WebApi.online.execute(request(api, id.replace(/[{}]/g, ""), values)).then(
            function (response) {
                Xrm.Utility.closeProgressIndicator();
                if (response.ok) {
                    Xrm.Navigation.openAlertDialog({ title: title, text: done });
                } else {
                    Xrm.Navigation.openErrorDialog({ message: title + " failed: " + response.status + " " + response.statusText });
                }
            },
            function (error) {
                Xrm.Utility.closeProgressIndicator();
                Xrm.Navigation.openErrorDialog({ message: title + " failed: " + error.message, details: error.raw || "" });
            });
    }

    // sendCampaign is the "Send eMS campaign" button of a campaign activity.
    ns.sendCampaign = function (formContext, values) {
        run(formContext, sendCampaign, values, "Send eMS campaign",
            "crmsync is sending this campaign activity through eMS to the members of its marketing lists. " +
            "Campaign responses appear on the activity as recipients react.");
    };

    // syncMarketingList is the "Synchronize with eMS" button of a marketing list.
    ns.syncMarketingList = function (formContext) {
        run(formContext, syncMarketingList, null, "Synchronize with eMS",
            "crmsync is synchronizing this marketing list with its eMS subscriber group.");
    };

    window.CrmSync = ns;
}(CrmSync));
