package config

import (
	"encoding"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const examplePath = "../contrib/fanmail.toml.example"

// The example config passes validation as it is.
func TestExampleConfigIsValid(t *testing.T) {
	if _, err := Load(examplePath); err != nil {
		t.Fatalf("%v", err)
	}
}

// commentedKeyRE matches a commented-out key or table header in the
// example (prose comments do not look like "# key =").
var commentedKeyRE = regexp.MustCompile(`(?m)^# ?(\[\[?[a-z_.]+\]\]?|"?[a-z_.]+"? = )`)

// Every key of Config appears in the example, set or commented out, so
// the example cannot fall behind the code; and the commented-out ones
// are real keys with values of the right type.
func TestExampleConfigHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	uncommented := commentedKeyRE.ReplaceAll(data, []byte("$1"))
	ix, err := indexKeys(uncommented)
	if err != nil {
		t.Fatalf("the example with its keys uncommented does not parse: %v", err)
	}
	for _, key := range configKeys(reflect.TypeFor[Config](), "") {
		if _, ok := ix.lines[key]; !ok {
			t.Errorf("key %s is not in %s", key, examplePath)
		}
	}
	cfg := Default()
	md, err := toml.Decode(string(uncommented), &cfg)
	if err != nil {
		t.Fatalf("the example with its keys uncommented: %v", err)
	}
	for _, k := range md.Undecoded() {
		t.Errorf("%s: unknown key %s", examplePath, k)
	}
}

// configKeys lists the dotted TOML keys of struct type t: tables, array
// tables and every field in them.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if f.Anonymous && name == "" {
			keys = append(keys, configKeys(f.Type, prefix)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		keys = append(keys, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !isLeaf(ft) {
			keys = append(keys, configKeys(ft, key+".")...)
		}
	}
	return keys
}

// isLeaf reports whether values of t are written as one TOML value.
func isLeaf(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) || p.Implements(reflect.TypeFor[toml.Unmarshaler]())
}
