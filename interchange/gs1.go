package interchange

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dlclark/regexp2"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// GS1Schema is GS1's EPCIS 2.0 JSON Schema, loaded from its files (the
// project does not ship GS1's files: the operator or a test names their
// directory).
type GS1Schema struct{ s *jsonschema.Schema }

const gs1Base = "https://gs1.github.io/EPCIS/JSON-Schema/"

// LoadGS1Schema compiles GS1's schema from dir, the JSON-Schema directory
// of GS1's EPCIS repository (EPCIS-JSON-Schema-root.json and schemas/).
// Nothing is fetched from the network.
func LoadGS1Schema(dir string) (*GS1Schema, error) {
	c := jsonschema.NewCompiler()
	c.UseRegexpEngine(func(s string) (jsonschema.Regexp, error) {
		re, err := regexp2.Compile(s, regexp2.ECMAScript)
		if err != nil {
			return nil, err
		}
		return (*gs1Regexp)(re), nil
	})
	c.AssertFormat()
	c.UseLoader(offline{})
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return c.AddResource(gs1Base+filepath.ToSlash(rel), doc)
	})
	if err != nil {
		return nil, fmt.Errorf("GS1 EPCIS schema in %s: %w", dir, err)
	}
	s, err := c.Compile(gs1Base + "EPCIS-JSON-Schema-root.json")
	if err != nil {
		return nil, fmt.Errorf("GS1 EPCIS schema in %s: %w", dir, err)
	}
	return &GS1Schema{s}, nil
}

// Validate checks an EPCIS document against the schema.
func (g *GS1Schema) Validate(doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return g.s.Validate(v)
}

type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not among GS1's schema files (nothing is fetched)", url)
}

type gs1Regexp regexp2.Regexp

func (re *gs1Regexp) MatchString(s string) bool {
	ok, err := (*regexp2.Regexp)(re).MatchString(s)
	return err == nil && ok
}

func (re *gs1Regexp) String() string { return (*regexp2.Regexp)(re).String() }
