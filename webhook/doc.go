// Package webhook is crmsync's HTTP ingest: it takes Dataverse's webhook calls,
// stores each accepted event durably before answering, and hands it to the engine.
//
// What it answers is a promise to Dataverse, which retries only 502/503/504 and
// only once: 202 means the event is on disk and will be processed; 4xx means it
// was refused for a reason retrying cannot fix; 503 means "not taken, try again".
package webhook
