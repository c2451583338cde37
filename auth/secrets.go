package auth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Secrets are the keys a development instance generates once and keeps in its data
// dir, so tokens and stored secrets survive restarts.
type Secrets struct {
	// JWTSecret is the HS256 key, as a string whose raw bytes are the key.
	JWTSecret string `json:"jwtSecret"`
	// SecretKey is base64 of 32 bytes that encrypt stored secrets.
	SecretKey string `json:"secretKey"`
}

// SecretsFile is the name of the file in the data dir.
const SecretsFile = "secrets.json"

// LoadOrCreateSecrets reads <dataDir>/secrets.json, creating it (mode 0600) with new
// random keys when it does not exist.
func LoadOrCreateSecrets(dataDir string) (Secrets, error) {
	path := filepath.Join(dataDir, SecretsFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var s Secrets
		if err := json.Unmarshal(b, &s); err != nil {
			return Secrets{}, fmt.Errorf("read %s: %w", path, err)
		}
		if len(s.JWTSecret) < MinSecretLength {
			return Secrets{}, fmt.Errorf("read %s: jwtSecret is shorter than %d bytes", path, MinSecretLength)
		}
		if _, err := DecodeSecretKey(s.SecretKey); err != nil {
			return Secrets{}, fmt.Errorf("read %s: secretKey: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Secrets{}, fmt.Errorf("read %s: %w", path, err)
	}
	s := Secrets{JWTSecret: randomString(48), SecretKey: base64.StdEncoding.EncodeToString(randomBytes(32))}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Secrets{}, fmt.Errorf("create data dir: %w", err)
	}
	b, _ = json.MarshalIndent(s, "", "  ")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateSecrets(dataDir) // another process created it first
	}
	if err != nil {
		return Secrets{}, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return Secrets{}, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return Secrets{}, fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

// DecodeSecretKey parses CRMSYNC_SECRET_KEY: base64 of exactly 32 bytes.
func DecodeSecretKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("must be base64")
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("must decode to 32 bytes, got %d", len(key))
	}
	return key, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomString(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))[:n]
}
