package main

import (
	"archive/zip"
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSolutionBuildCommand runs `crmsync solution build --out DIR` and opens the
// zip it prints the path of.
func TestSolutionBuildCommand(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"solution", "build", "--out", dir}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("%v; stderr: %s", err, stderr.String())
	}
	path := strings.TrimSpace(stdout.String())
	if filepath.Dir(path) != dir || filepath.Ext(path) != ".zip" {
		t.Fatalf("printed %q, want a zip in %s", path, dir)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	for _, want := range []string{"[Content_Types].xml", "solution.xml", "customizations.xml",
		"customapis/cs_SendCampaign/customapi.xml", "customapis/cs_SyncMarketingList/customapi.xml"} {
		if !slices.Contains(names, want) {
			t.Errorf("the zip lacks %s (has %v)", want, names)
		}
	}
}

// TestSolutionCommandErrors: a missing or unknown subcommand prints the usage and
// fails, as do stray arguments.
func TestSolutionCommandErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"solution"}, {"solution", "pack"}, {"solution", "build", "extra"}} {
		var stderr bytes.Buffer
		err := run(t.Context(), args, func(string) string { return "" }, &bytes.Buffer{}, &stderr)
		if err == nil {
			t.Errorf("%v: no error", args)
		}
		if len(args) < 3 && !strings.Contains(stderr.String(), "crmsync solution build") {
			t.Errorf("%v: usage not printed: %q", args, stderr.String())
		}
	}
}
