package mail

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func newTestTokens(t testing.TB, fill byte) *Tokens {
	t.Helper()
	tokens, err := NewTokens(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	return tokens
}

func TestTokensRoundTrip(t *testing.T) {
	t.Parallel()
	tokens := newTestTokens(t, 7)
	msg := NewMessageID()
	for _, kind := range []Kind{KindOpen, KindClick, KindUnsubscribe, KindConfirm} {
		for _, link := range []int{0, 1, 300, MaxLinkIndex} {
			token := tokens.Sign(kind, msg, link)
			if strings.ContainsAny(token, "+/=") || len(token) != 47 {
				t.Errorf("token %q is not 47 characters of unpadded URL-safe base64", token)
			}
			gotKind, gotMsg, gotLink, err := tokens.Verify(token)
			if err != nil || gotKind != kind || gotMsg != msg || gotLink != link {
				t.Errorf("Verify(Sign(%v, msg, %d)) = %v, %x, %d, %v", kind, link, gotKind, gotMsg, gotLink, err)
			}
		}
	}
}

func TestTokensRejectTampering(t *testing.T) {
	t.Parallel()
	tokens := newTestTokens(t, 7)
	msg := NewMessageID()
	token := tokens.Sign(KindClick, msg, 2)
	raw, _ := base64.RawURLEncoding.DecodeString(token)
	reencode := func(change func([]byte)) string {
		b := bytes.Clone(raw)
		change(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}

	bad := map[string]string{
		"empty":          "",
		"truncated":      token[:len(token)-1],
		"one more":       token + "A",
		"padded":         token + "=",
		"not base64":     strings.Repeat("*", len(token)),
		"forged MAC":     reencode(func(b []byte) { b[len(b)-1] ^= 1 }),
		"other link":     reencode(func(b []byte) { b[18]++ }),
		"other message":  reencode(func(b []byte) { b[5] ^= 0x80 }),
		"as unsubscribe": reencode(func(b []byte) { b[0] = byte(KindUnsubscribe) }),
		"unknown kind":   reencode(func(b []byte) { b[0] = 9 }),
		"other key":      newTestTokens(t, 8).Sign(KindClick, msg, 2),
		"standard alphabet": strings.NewReplacer("-", "+", "_", "/").Replace(
			newTestTokens(t, 7).Sign(KindClick, [16]byte{0xfb, 0xff, 0xfe}, 0xffff)),
	}
	for name, forged := range bad {
		if forged == token {
			t.Fatalf("%s: test case equals the genuine token", name)
		}
		if _, _, _, err := tokens.Verify(forged); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: Verify(%q) = %v, want ErrBadToken", name, forged, err)
		}
	}
}

func TestTokensSignPanicsOnProgrammingErrors(t *testing.T) {
	t.Parallel()
	tokens := newTestTokens(t, 7)
	for name, sign := range map[string]func(){
		"link too big":  func() { tokens.Sign(KindClick, [16]byte{}, MaxLinkIndex+1) },
		"link negative": func() { tokens.Sign(KindClick, [16]byte{}, -1) },
		"kind zero":     func() { tokens.Sign(0, [16]byte{}, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Sign did not panic", name)
				}
			}()
			sign()
		}()
	}
}

func TestNewTokensWantsALongKey(t *testing.T) {
	t.Parallel()
	if _, err := NewTokens(make([]byte, 31)); err == nil {
		t.Error("NewTokens with 31 bytes: no error")
	}
	key := bytes.Repeat([]byte{1}, 32)
	tokens, _ := NewTokens(key)
	token := tokens.Sign(KindOpen, [16]byte{1}, 0)
	key[0] = 2 // the caller's slice is not kept
	if _, _, _, err := tokens.Verify(token); err != nil {
		t.Errorf("Verify after the caller changed its key slice: %v", err)
	}
}

func TestMessageIDs(t *testing.T) {
	t.Parallel()
	a, b := NewMessageID(), NewMessageID()
	if a == b || a == [16]byte{} {
		t.Errorf("NewMessageID gave %x and %x", a, b)
	}
	s := FormatMessageID(a)
	if len(s) != 32 || !validMessageID(s) {
		t.Errorf("FormatMessageID = %q, want 32 hex digits usable as Message.ID", s)
	}
	if back, err := ParseMessageID(s); err != nil || back != a {
		t.Errorf("ParseMessageID(%q) = %x, %v", s, back, err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 32)} {
		if _, err := ParseMessageID(bad); err == nil {
			t.Errorf("ParseMessageID(%q): no error", bad)
		}
	}
}

func FuzzVerify(f *testing.F) {
	tokens := newTestTokens(f, 7)
	f.Add(tokens.Sign(KindClick, [16]byte{1, 2, 3}, 4))
	f.Add(tokens.Sign(KindConfirm, [16]byte{}, 0))
	f.Add("")
	f.Add(strings.Repeat("A", 47))
	f.Add(strings.Repeat("_", 46) + "=")
	f.Fuzz(func(t *testing.T, token string) {
		kind, msg, link, err := tokens.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("Verify(%q) = %v, want ErrBadToken", token, err)
			}
			return
		}
		// Whatever verifies is exactly what Sign makes: one spelling per token.
		if again := tokens.Sign(kind, msg, link); again != token {
			t.Fatalf("Verify accepted %q, but Sign makes %q", token, again)
		}
	})
}
