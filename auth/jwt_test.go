package auth_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crmsync/auth"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestVerify(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Config{Secret: secret, Issuer: "crmsync", Audience: "api"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "u", "tenant": "t1", "roles": []string{"viewer", "editor", "wizard"}, "exp": exp, "iss": "crmsync", "aud": "api"}
	}
	good := sign(base(), jwt.SigningMethodHS256, secret)
	c, err := v.Verify(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tenant != "t1" || c.Role != auth.RoleEditor || c.Subject != "u" {
		t.Errorf("caller = %+v", c)
	}

	none := sign(base(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
	noTenant := base()
	delete(noTenant, "tenant")
	noExp := base()
	delete(noExp, "exp")
	expired := base()
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	wrongIss := base()
	wrongIss["iss"] = "someone"
	wrongAud := base()
	wrongAud["aud"] = "other"
	bad := map[string]string{
		"alg none":        none,
		"wrong signature": sign(base(), jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx")),
		"HS512":           sign(base(), jwt.SigningMethodHS512, secret),
		"no tenant":       sign(noTenant, jwt.SigningMethodHS256, secret),
		"no exp":          sign(noExp, jwt.SigningMethodHS256, secret),
		"expired":         sign(expired, jwt.SigningMethodHS256, secret),
		"wrong issuer":    sign(wrongIss, jwt.SigningMethodHS256, secret),
		"wrong audience":  sign(wrongAud, jwt.SigningMethodHS256, secret),
		"garbage":         "not.a.token",
		"tampered":        good[:len(good)-2] + "xx",
	}
	for name, tok := range bad {
		if c, err := v.Verify(tok); err == nil {
			t.Errorf("%s: accepted as %+v", name, c)
		}
	}
	if _, err := v.VerifyHeader("Basic abc"); err == nil {
		t.Error("Basic scheme accepted")
	}
	if _, err := v.VerifyHeader(""); err != auth.ErrNoToken {
		t.Errorf("empty header: %v", err)
	}
}

func TestMintRoundTrip(t *testing.T) {
	t.Parallel()
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	tok, err := auth.Mint(secret, "cli", "acme", []string{"admin"}, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil || c.Tenant != "acme" || c.Role != auth.RoleAdmin {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	if !c.Can(auth.RoleViewer) || !c.Can(auth.RoleAdmin) {
		t.Error("admin must include the lower roles")
	}
	if _, err := auth.Mint(secret, "cli", "acme", []string{"root"}, time.Hour, "", ""); err == nil {
		t.Error("unknown role minted")
	}
	if _, err := auth.Mint(secret[:10], "cli", "acme", nil, time.Hour, "", ""); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{Secret: []byte("short")}); err == nil {
		t.Error("short verifier secret accepted")
	}
}

func TestSecretsPersist(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s1, err := auth.LoadOrCreateSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := auth.LoadOrCreateSecrets(dir)
	if err != nil || s1 != s2 {
		t.Fatalf("second load = %+v, %v; want %+v", s2, err, s1)
	}
	fi, err := os.Stat(filepath.Join(dir, auth.SecretsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode = %v, %v", fi.Mode(), err)
	}
	if key, err := auth.DecodeSecretKey(s1.SecretKey); err != nil || len(key) != 32 {
		t.Errorf("secret key: %v", err)
	}
	if _, err := auth.DecodeSecretKey(base64.StdEncoding.EncodeToString([]byte("short"))); err == nil || !strings.Contains(err.Error(), "32") {
		t.Errorf("short key: %v", err)
	}
	os.WriteFile(filepath.Join(dir, auth.SecretsFile), []byte("{"), 0o600)
	if _, err := auth.LoadOrCreateSecrets(dir); err == nil {
		t.Error("corrupt secrets file accepted")
	}
}
