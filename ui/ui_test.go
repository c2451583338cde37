package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestHandlerServesTheFiles(t *testing.T) {
	t.Parallel()
	h := Handler()
	for _, tc := range []struct {
		path, contentType, cache, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", "no-store", `<section id="dead-letters">`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "no-cache", "replayEvents"},
		{"/ui/app.css", "text/css; charset=utf-8", "no-cache", "#chart"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			res := get(t, h, http.MethodGet, tc.path)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			for header, want := range map[string]string{
				"Content-Type": tc.contentType, "Cache-Control": tc.cache,
				"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff",
			} {
				if got := res.Header.Get(header); got != want {
					t.Errorf("%s = %q, want %q", header, got, want)
				}
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("the body lacks %q", tc.contains)
			}
		})
	}
}

func TestHandlerRedirectsAndRefuses(t *testing.T) {
	t.Parallel()
	h := Handler()
	res := get(t, h, http.MethodGet, "/ui")
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui answers %d to %q, want a redirect to /ui/", res.StatusCode, res.Header.Get("Location"))
	}
	if res := get(t, h, http.MethodPost, "/ui/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/ answers %d", res.StatusCode)
	}
	if res := get(t, h, http.MethodGet, "/ui/nothing.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown file answers %d", res.StatusCode)
	}
}

// TestIndexUsesOnlyLocalAssets: the page loads nothing from elsewhere, so it works
// offline and under the CSP, and leaks no token or address to a CDN.
func TestIndexUsesOnlyLocalAssets(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"static/index.html", "static/app.js", "static/app.css"} {
		b, err := static.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		// The SVG namespace is a name, not something fetched.
		s := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(s); m != "" {
			t.Errorf("%s names an external URL: %s", name, m)
		}
		if name == "static/index.html" && regexp.MustCompile(`(?i)<script>|\son[a-z]+=|style=`).MatchString(s) {
			t.Errorf("%s has inline script or style, which the CSP refuses", name)
		}
	}
	index, _ := static.ReadFile("static/index.html")
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(index), -1)
	if len(refs) == 0 {
		t.Fatal("index.html references no assets")
	}
	h := Handler()
	for _, ref := range refs {
		if strings.Contains(ref[1], ":") || strings.HasPrefix(ref[1], "/") {
			t.Errorf("index.html references %q, not a file next to it", ref[1])
			continue
		}
		if res := get(t, h, http.MethodGet, "/ui/"+ref[1]); res.StatusCode != http.StatusOK {
			t.Errorf("index.html references %q, which answers %d", ref[1], res.StatusCode)
		}
	}
}
