package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLength is the shortest HS256 key accepted, in bytes.
const MinSecretLength = 32

// Config configures token validation.
type Config struct {
	// Secret is the HS256 key (CRMSYNC_JWT_SECRET): the string's raw bytes, at least 32.
	Secret []byte
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be among the token's aud.
	Audience string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier checks tokens; the algorithm is pinned to HS256, so "none" and
// algorithm-confusion tokens are refused.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
}

// ErrNoToken is returned when a request carries no bearer token at all.
var ErrNoToken = errors.New("no bearer token")

// NewVerifier validates cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Secret) < MinSecretLength {
		return nil, fmt.Errorf("CRMSYNC_JWT_SECRET must be at least %d bytes", MinSecretLength)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithLeeway(30 * time.Second),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{cfg: cfg, parser: jwt.NewParser(opts...)}, nil
}

// Claims are the JWT claims crmsync reads and writes.
type Claims struct {
	Tenant string   `json:"tenant"`
	Roles  []string `json:"roles"`
	jwt.RegisteredClaims
}

// Verify parses and checks a token and returns its caller.
func (v *Verifier) Verify(token string) (*Caller, error) {
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.cfg.Secret, nil })
	if err != nil {
		return nil, fmt.Errorf("invalid token: %w", err)
	}
	if claims.Tenant == "" {
		return nil, errors.New("invalid token: the tenant claim is required")
	}
	c := &Caller{Subject: claims.Subject, Tenant: claims.Tenant, ExpiresAt: claims.ExpiresAt.Time}
	for _, r := range claims.Roles {
		c.Role = max(c.Role, ParseRole(r))
	}
	return c, nil
}

// VerifyRequest verifies the request's "Authorization: Bearer" token.
func (v *Verifier) VerifyRequest(r *http.Request) (*Caller, error) {
	return v.VerifyHeader(r.Header.Get("Authorization"))
}

// VerifyHeader verifies an Authorization header value ("Bearer <jwt>").
func (v *Verifier) VerifyHeader(h string) (*Caller, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if h == "" {
		return nil, ErrNoToken
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, errors.New("invalid token: the Authorization header must be \"Bearer <token>\"")
	}
	return v.Verify(strings.TrimSpace(token))
}

// Middleware puts the caller of each request in its context. A missing or bad token
// is not refused here: the API answers it per field, inside its errors.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		c, err := v.VerifyRequest(r)
		switch {
		case err == nil:
			ctx = WithCaller(ctx, c)
		case !errors.Is(err, ErrNoToken):
			ctx = WithError(ctx, err)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Mint signs a token for tenant with the given roles, valid for ttl.
func Mint(secret []byte, subject, tenant string, roles []string, ttl time.Duration, issuer, audience string) (string, error) {
	if len(secret) < MinSecretLength {
		return "", fmt.Errorf("secret must be at least %d bytes", MinSecretLength)
	}
	if tenant == "" {
		return "", errors.New("tenant is required")
	}
	if ttl <= 0 {
		return "", errors.New("ttl must be positive")
	}
	for _, r := range roles {
		if ParseRole(r) == RoleNone {
			return "", fmt.Errorf("unknown role %q (want viewer, editor or admin)", r)
		}
	}
	now := time.Now()
	claims := Claims{
		Tenant: tenant,
		Roles:  slices.Clone(roles),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			Issuer:    issuer,
		},
	}
	if audience != "" {
		claims.Audience = jwt.ClaimStrings{audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
