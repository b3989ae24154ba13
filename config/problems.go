package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Problem is one thing wrong with a config: the file and line of the key
// (Line is 0 when the key is not in the file, as for a default or a
// flag), the key as the file spells it, dotted, and what is wrong.
type Problem struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// keyIndex says where each key of a TOML file is, so every problem can
// name its line. BurntSushi/toml, which decodes the file, keeps key
// positions to itself; go-toml's parser exposes them. Keys are dotted
// as written, unquoted; the k-th [[array.table]] is "array.table[k]" and
// its keys "array.table[k].key", and also indexed without the [k], as
// BurntSushi names them.
type keyIndex struct {
	lines  map[string]int      // key → line of its first occurrence
	spans  map[string][][2]int // key → byte ranges of each key = value, for blanking
	names  map[string]string   // "array.table[k]" → its name = value
	tables map[string]int      // array table → entries so far
}

// indexKeys parses data; a syntax error is returned, and the index
// holds what came before it.
func indexKeys(data []byte) (*keyIndex, error) {
	ix := &keyIndex{lines: map[string]int{}, spans: map[string][][2]int{},
		names: map[string]string{}, tables: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	var table string // the current [table] or [[array.table]][k]
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := e.Key()
			name, line := keyName(&p, &it)
			if e.Kind == unstable.ArrayTable {
				k := ix.tables[name]
				ix.tables[name]++
				ix.add(name, line)
				name = fmt.Sprintf("%s[%d]", name, k)
			}
			table = name
			ix.add(name, line)
		case unstable.KeyValue:
			it := e.Key()
			name, line := keyName(&p, &it)
			full := joinKey(table, name)
			ix.add(full, line)
			if plain := stripIndex(full); plain != full {
				ix.add(plain, line)
			}
			span := [2]int{int(e.Raw.Offset), int(e.Raw.Offset + e.Raw.Length)}
			ix.spans[stripIndex(full)] = append(ix.spans[stripIndex(full)], span)
			if name == "name" && e.Value().Kind == unstable.String {
				ix.names[table] = string(e.Value().Data)
			}
		}
	}
	return ix, p.Error()
}

func (ix *keyIndex) add(key string, line int) {
	if _, ok := ix.lines[key]; !ok {
		ix.lines[key] = line
	}
}

func keyName(p *unstable.Parser, it *unstable.Iterator) (string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return strings.Join(parts, "."), line
}

func joinKey(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func stripIndex(key string) string { return indexRE.ReplaceAllString(key, "") }

// line returns the line of key as Validate and the decoder name it:
// dotted ("queue.retry_max"), an array table entry by index
// ("queue.rule[0]") or by name ("queue.group big"), or a table whose
// problem is not one key's ("queue"): then its header, or its first key.
// It is 0 for a key not in the file.
func (ix *keyIndex) line(key string) int {
	if ix == nil {
		return 0
	}
	if l, ok := ix.lines[key]; ok {
		return l
	}
	if table, name, ok := strings.Cut(key, " "); ok {
		for k := 0; k < ix.tables[table]; k++ {
			entry := fmt.Sprintf("%s[%d]", table, k)
			if ix.names[entry] == name {
				return ix.lines[entry]
			}
		}
	}
	first := 0
	for k, l := range ix.lines {
		if strings.HasPrefix(k, key+".") && (first == 0 || l < first) {
			first = l
		}
	}
	return first
}

// blank returns data with the next not yet blanked occurrence of key =
// value replaced by spaces (newlines kept, so lines keep their numbers),
// and false when there is none left.
func (ix *keyIndex) blank(data []byte, key string) ([]byte, bool) {
	spans := ix.spans[stripIndex(key)]
	if len(spans) == 0 {
		return data, false
	}
	ix.spans[stripIndex(key)] = spans[1:]
	out := append([]byte(nil), data...)
	for i := spans[0][0]; i < spans[0][1]; i++ {
		if out[i] != '\n' && out[i] != '\r' {
			out[i] = ' '
		}
	}
	return out, true
}

// lastKeyRE reads the key and line out of BurntSushi/toml's type errors,
// which are plain errors: `toml: line 3 (last key "a.b"): message`.
var lastKeyRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// typeProblem turns a decoding error (a value of the wrong type, or one
// its type refuses) into a Problem, or returns nil when err does not
// say which key it is about.
func typeProblem(path string, ix *keyIndex, err error) *Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" {
		line := pe.Position.Line
		if line == 0 {
			line = ix.line(pe.LastKey)
		}
		return &Problem{File: path, Line: line, Key: pe.LastKey, Msg: pe.Message}
	}
	if m := lastKeyRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		if line == 0 {
			line = ix.line(m[2])
		}
		return &Problem{File: path, Line: line, Key: m[2], Msg: m[3]}
	}
	return nil
}

// Problems sets *out to the problems err reports and says whether err
// is made of nothing else (as Load's errors are, except for a file that
// cannot be read or parsed).
func Problems(err error, out *[]*Problem) bool {
	*out = nil
	for _, e := range unwrapAll(err) {
		var p *Problem
		if !errors.As(e, &p) {
			*out = nil
			return false
		}
		*out = append(*out, p)
	}
	return len(*out) > 0
}
