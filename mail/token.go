package mail

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Kind says what a token is for, so a token made for one purpose (say, an open pixel)
// cannot be replayed for another (an unsubscribe).
type Kind byte

const (
	KindOpen        Kind = iota + 1 // open pixel, /t/o/{token}
	KindClick                       // click redirect, /t/c/{token}; carries the link index
	KindUnsubscribe                 // one-click unsubscribe, /u/{token}
	KindConfirm                     // double opt-in confirmation, /forms/confirm?token=
)

// String names the kind for logs and metrics.
func (k Kind) String() string {
	switch k {
	case KindOpen:
		return "open"
	case KindClick:
		return "click"
	case KindUnsubscribe:
		return "unsubscribe"
	case KindConfirm:
		return "confirm"
	}
	return fmt.Sprintf("Kind(%d)", byte(k))
}

func (k Kind) valid() bool { return k >= KindOpen && k <= KindConfirm }

// Token layout: kind (1) | message id (16) | link index (2, big endian) | MAC (16),
// encoded as unpadded URL-safe base64.
const (
	tokenPayloadLen = 1 + 16 + 2
	tokenMACLen     = 16
	tokenLen        = tokenPayloadLen + tokenMACLen
	// MaxLinkIndex is the highest link index a click token can carry.
	MaxLinkIndex = 1<<16 - 1
)

// tokenDomain separates these MACs from any other use of the same key.
const tokenDomain = "crmsync/mail/token/v1\x00"

var tokenEncoding = base64.RawURLEncoding.Strict()

// Tokens signs and verifies the tokens in tracking, unsubscribe and confirmation URLs.
// A token names only a random message id, a kind and a link index, so it reveals no
// subscriber or campaign id, and it cannot be forged or altered without the key.
type Tokens struct {
	key []byte
}

// NewTokens returns a Tokens that signs with key, which must hold at least 32 bytes.
func NewTokens(key []byte) (*Tokens, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("new tokens: key is %d bytes, want at least 32", len(key))
	}
	return &Tokens{key: append([]byte(nil), key...)}, nil
}

// Sign returns the token for kind, message id msg and link index link (0 for kinds
// other than KindClick). It panics when kind is not one of the Kind constants or link
// is outside 0..MaxLinkIndex: both are programming errors, not input.
func (t *Tokens) Sign(kind Kind, msg [16]byte, link int) string {
	if !kind.valid() {
		panic(fmt.Sprintf("mail: Tokens.Sign: unknown kind %d", byte(kind)))
	}
	if link < 0 || link > MaxLinkIndex {
		panic(fmt.Sprintf("mail: Tokens.Sign: link index %d outside 0..%d", link, MaxLinkIndex))
	}
	var buf [tokenLen]byte
	buf[0] = byte(kind)
	copy(buf[1:17], msg[:])
	binary.BigEndian.PutUint16(buf[17:tokenPayloadLen], uint16(link))
	copy(buf[tokenPayloadLen:], t.mac(buf[:tokenPayloadLen]))
	return tokenEncoding.EncodeToString(buf[:])
}

// Verify checks token and returns what it was signed for. Every token it does not
// accept, whatever the reason, gets ErrBadToken; the MAC is compared in constant time.
func (t *Tokens) Verify(token string) (Kind, [16]byte, int, error) {
	var msg [16]byte
	if len(token) != tokenEncoding.EncodedLen(tokenLen) {
		return 0, msg, 0, ErrBadToken
	}
	var buf [tokenLen]byte
	if n, err := tokenEncoding.Decode(buf[:], []byte(token)); err != nil || n != tokenLen {
		return 0, msg, 0, ErrBadToken
	}
	if !hmac.Equal(t.mac(buf[:tokenPayloadLen]), buf[tokenPayloadLen:]) {
		return 0, msg, 0, ErrBadToken
	}
	kind := Kind(buf[0])
	if !kind.valid() {
		return 0, msg, 0, ErrBadToken
	}
	copy(msg[:], buf[1:17])
	return kind, msg, int(binary.BigEndian.Uint16(buf[17:tokenPayloadLen])), nil
}

// mac is the truncated HMAC-SHA256 of the domain prefix and payload.
func (t *Tokens) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, t.key)
	h.Write([]byte(tokenDomain))
	h.Write(payload)
	return h.Sum(nil)[:tokenMACLen]
}

// NewMessageID returns a random message id: the only id a token carries, so it must
// not be guessable.
func NewMessageID() [16]byte {
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails; crypto/rand crashes the program instead
	return id
}

// FormatMessageID spells a message id as 32 lower-case hex digits, e.g. for Message.ID.
func FormatMessageID(id [16]byte) string { return hex.EncodeToString(id[:]) }

// ParseMessageID reads what FormatMessageID wrote.
func ParseMessageID(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != hex.EncodedLen(len(id)) {
		return id, fmt.Errorf("parse message id: want %d hex digits, got %d characters", hex.EncodedLen(len(id)), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return [16]byte{}, fmt.Errorf("parse message id: %w", err)
	}
	return id, nil
}
