// Package store keeps crmsync's durable state in MongoDB (or the embedded
// MongoDB-compatible server) and is the only package that talks to it.
//
// Every read and write takes the caller's tenant: a document of another tenant
// is reported as ErrNotFound, never returned. Hot documents are keyed by
// deterministic _id values (address claims, event ids) so that the embedded
// store finds them without scanning, and every write is atomic on one document.
package store
