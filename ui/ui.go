// Package ui serves the status dashboard: static files, embedded in the binary,
// that talk only to the GraphQL API with the token the user gives them, so the
// dashboard can see and do exactly what that token may.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Prefix is the path the dashboard lives under.
const Prefix = "/ui/"

// CSP allows the page nothing but its own origin: no inline scripts, no CDNs, and
// fetch only to this service's GraphQL endpoint.
const CSP = "default-src 'self'"

// Handler serves the dashboard's files under /ui/, and redirects /ui to /ui/ so
// the page's relative links resolve. index.html is never cached, so a new binary's
// page is seen at once; the other files are revalidated on each load.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("ui: the embedded static directory is missing: " + err.Error())
	}
	files := http.StripPrefix(Prefix[:len(Prefix)-1], http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == Prefix[:len(Prefix)-1] {
			target := Prefix
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == Prefix || r.URL.Path == Prefix+"index.html" {
			h.Set("Cache-Control", "no-store")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}
