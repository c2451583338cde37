package solution

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// buildZip builds the solution in memory and opens it.
func buildZip(t *testing.T) (*zip.Reader, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := Build(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("the solution zip does not open: %v", err)
	}
	return zr, buf.Bytes()
}

// readZipFile returns one file of the zip.
func readZipFile(t *testing.T, f *zip.File) []byte {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("%s: %v", f.Name, err)
	}
	return b
}

// wellFormed reads an XML document to its end.
func wellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// TestSolutionZipIsComplete: the zip holds exactly the source's files, content
// types first, every XML file parses, and [Content_Types].xml names the extension
// (or the part) of every file, since the importer ignores parts it does not list.
func TestSolutionZipIsComplete(t *testing.T) {
	t.Parallel()
	zr, _ := buildZip(t)

	var want []string
	if err := fs.WalkDir(Source(), ".", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			want = append(want, name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	files := map[string][]byte{}
	for _, f := range zr.File {
		got = append(got, f.Name)
		files[f.Name] = readZipFile(t, f)
	}
	if len(got) == 0 || got[0] != ContentTypesFile {
		t.Errorf("first file %v, want %s", got, ContentTypesFile)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("zip files\n got %v\nwant %v", got, want)
	}
	for _, name := range []string{ContentTypesFile, "solution.xml", "customizations.xml"} {
		if files[name] == nil {
			t.Errorf("the zip has no %s", name)
		}
	}

	for name, b := range files {
		if path.Ext(name) == ".xml" {
			if err := wellFormed(b); err != nil {
				t.Errorf("%s is not well-formed XML: %v", name, err)
			}
		}
	}

	var types struct {
		XMLName  xml.Name `xml:"http://schemas.openxmlformats.org/package/2006/content-types Types"`
		Defaults []struct {
			Extension string `xml:"Extension,attr"`
		} `xml:"Default"`
		Overrides []struct {
			PartName string `xml:"PartName,attr"`
		} `xml:"Override"`
	}
	if err := xml.Unmarshal(files[ContentTypesFile], &types); err != nil {
		t.Fatalf("%s: %v", ContentTypesFile, err)
	}
	covered := map[string]bool{} // ".ext" and "/part"
	for _, d := range types.Defaults {
		covered["."+strings.ToLower(d.Extension)] = true
	}
	for _, o := range types.Overrides {
		covered[o.PartName] = true
	}
	for name := range files {
		if name != ContentTypesFile && !covered[strings.ToLower(path.Ext(name))] && !covered["/"+name] {
			t.Errorf("%s does not cover %s", ContentTypesFile, name)
		}
	}
}

// TestSolutionBuildIsDeterministic: the zip is an artefact of the source alone, so
// two builds are byte for byte the same and carry no build time.
func TestSolutionBuildIsDeterministic(t *testing.T) {
	t.Parallel()
	zr, first := buildZip(t)
	_, second := buildZip(t)
	if !bytes.Equal(first, second) {
		t.Error("two builds of the same source differ")
	}
	for _, f := range zr.File {
		if f.Modified.Year() != 2000 || f.Method != zip.Deflate {
			t.Errorf("%s: modified %v, method %d", f.Name, f.Modified, f.Method)
		}
	}
}

// TestSolutionBuildFile writes the zip under the name Dataverse gives an export,
// leaving no temporary file behind.
func TestSolutionBuildFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "build")
	p, err := BuildFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "crmsync_1_0_0_0.zip"); p != want {
		t.Errorf("path %q, want %q", p, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("build folder holds %d files, want only the zip", len(entries))
	}
	zr, err := zip.OpenReader(p)
	if err != nil {
		t.Fatal(err)
	}
	zr.Close()
}
