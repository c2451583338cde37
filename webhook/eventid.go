package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"crmsync/dataverse"
)

// EventID derives the id of a Dataverse event. It is the same for Dataverse's retry
// of a call (which has a new x-request-id but the same OperationId) and different
// for every other event: the connection, the step (OwningExtension), the operation,
// the message, the row and the stage. Without an OperationId, the body itself is
// the identity.
func EventID(connectionID string, c *dataverse.ExecutionContext, body []byte) string {
	h := sha256.New()
	h.Write([]byte(connectionID))
	h.Write([]byte{0})
	if c.OperationID == "" {
		h.Write([]byte("body"))
		h.Write([]byte{0})
		h.Write(body)
	} else {
		ext := ""
		if c.OwningExtension != nil {
			ext = c.OwningExtension.ID
		}
		for _, part := range []string{ext, c.OperationID, c.MessageName, c.PrimaryEntityID, strconv.Itoa(c.Stage)} {
			h.Write([]byte(strings.ToLower(part)))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
