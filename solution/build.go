package solution

import (
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ContentTypesFile is the package's content-type list; the importer reads a part
// only when its extension (or name) is listed there, so it goes first in the zip,
// as in exported solutions.
const ContentTypesFile = "[Content_Types].xml"

// Build writes the importable zip of the solution to w: every file of the source,
// [Content_Types].xml first and the rest in lexical order, deflated, all stamped
// with the same fixed time, so the same source always gives the same bytes. It
// refuses a source that does not parse.
func Build(w io.Writer) error {
	if _, err := Load(); err != nil {
		return fmt.Errorf("build solution: %w", err)
	}
	fsys := Source()
	names, err := zipOrder(fsys)
	if err != nil {
		return fmt.Errorf("build solution: %w", err)
	}
	// A constant instead of the build time: the zip is an artefact of the source.
	stamp := time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)
	zw := zip.NewWriter(w)
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("build solution: %w", err)
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: stamp})
		if err != nil {
			return fmt.Errorf("build solution: add %s: %w", name, err)
		}
		if _, err := fw.Write(b); err != nil {
			return fmt.Errorf("build solution: add %s: %w", name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("build solution: %w", err)
	}
	return nil
}

// zipOrder lists the source's files as Build adds them.
func zipOrder(fsys fs.FS) ([]string, error) {
	names := []string{ContentTypesFile}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && name != ContentTypesFile {
			names = append(names, name) // WalkDir walks in lexical order
		}
		return nil
	})
	return names, err
}

// FileName is the zip's name, <unique name>_<version with underscores>.zip, as
// Dataverse names an exported solution (crmsync_1_0_0_0.zip).
func (s *Solution) FileName() string {
	return s.UniqueName + "_" + strings.ReplaceAll(s.Version, ".", "_") + ".zip"
}

// BuildFile writes the zip into dir (created if missing) under FileName and
// returns its path. The file appears whole or not at all: it is written under a
// temporary name and renamed.
func BuildFile(dir string) (path string, err error) {
	s, err := Load()
	if err != nil {
		return "", fmt.Errorf("build solution: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build solution: %w", err)
	}
	f, err := os.CreateTemp(dir, s.FileName()+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("build solution: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := Build(f); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("build solution: %w", err)
	}
	path = filepath.Join(dir, s.FileName())
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("build solution: %w", err)
	}
	return path, nil
}
