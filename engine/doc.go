// Package engine applies the sync rules: workers of a Redis consumer group take
// stored events and run the steps registered for them, the way Dataverse runs
// plug-in steps registered for a message, a table and a stage.
package engine
