package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The $filter subset of §4.4: eq ne gt ge lt le, and or not, parentheses,
// contains/startswith/endswith, and string, number, boolean, null, GUID, date and
// date-time literals. Operands are type-checked against the table before any row is
// read, so a bad filter is a 400 with the OData parser's wording. String comparisons
// ignore case, as Dataverse's collation does.

// filterNode is a boolean expression over one row.
type filterNode interface {
	eval(rec *record) bool
}

type andNode struct{ l, r filterNode }
type orNode struct{ l, r filterNode }
type notNode struct{ x filterNode }

func (n andNode) eval(rec *record) bool { return n.l.eval(rec) && n.r.eval(rec) }
func (n orNode) eval(rec *record) bool  { return n.l.eval(rec) || n.r.eval(rec) }
func (n notNode) eval(rec *record) bool { return !n.x.eval(rec) }

// operand is a column, a column of the row a lookup points at
// (sdkmessageid/name), or a literal.
type operand struct {
	col  *column
	via  *column // the lookup a navigation path follows; nil for the row's own column
	to   string  // the table the navigation property targets
	lit  any     // string, int64, float64, bool, time.Time, guid (string), nil
	kind string  // Edm type name of a literal; "" for null
	pos  int
	rows rowFunc
}

// rowFunc finds the row a lookup points at; filters are evaluated under the
// emulator's lock, so it may read the tables directly.
type rowFunc func(r ref) *record

func (o operand) value(rec *record) any {
	switch {
	case o.via != nil:
		r, ok := rec.vals[o.via.name].(ref)
		if !ok || r.table != o.to {
			return nil
		}
		if row := o.rows(r); row != nil {
			return row.vals[o.col.name]
		}
		return nil
	case o.col != nil:
		return rec.vals[o.col.name]
	}
	return o.lit
}

func (o operand) edm() string {
	if o.col != nil {
		return o.col.typ.edm()
	}
	return o.kind
}

type compareNode struct {
	op   string // eq ne gt ge lt le
	l, r operand
}

func (n compareNode) eval(rec *record) bool {
	a, b := n.l.value(rec), n.r.value(rec)
	if a == nil || b == nil {
		switch n.op {
		case "eq":
			return a == nil && b == nil
		case "ne":
			return (a == nil) != (b == nil)
		}
		return false
	}
	c := compareValues(a, b)
	switch n.op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	}
	return c <= 0
}

// funcNode is contains/startswith/endswith on a string column.
type funcNode struct {
	name  string
	arg   operand
	lower string // the literal, lower-cased
}

func (n funcNode) eval(rec *record) bool {
	s, ok := n.arg.value(rec).(string)
	if !ok {
		return false
	}
	s = strings.ToLower(s)
	switch n.name {
	case "contains":
		return strings.Contains(s, n.lower)
	case "startswith":
		return strings.HasPrefix(s, n.lower)
	}
	return strings.HasSuffix(s, n.lower)
}

// boolNode is a Boolean column or literal used as a condition on its own.
type boolNode struct{ o operand }

func (n boolNode) eval(rec *record) bool { v, _ := n.o.value(rec).(bool); return v }

// compareValues orders two non-nil stored or literal values; strings compare
// without regard to case, lookups by their id.
func compareValues(a, b any) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return -1
		}
		return 1
	}
	if r, ok := a.(ref); ok {
		a = r.id
	}
	if r, ok := b.(ref); ok {
		b = r.id
	}
	switch a := a.(type) {
	case string:
		if b, ok := b.(string); ok {
			return compareFold(a, b)
		}
	case bool:
		if b, ok := b.(bool); ok {
			switch {
			case a == b:
				return 0
			case !a:
				return -1
			}
			return 1
		}
	case int64:
		switch b := b.(type) {
		case int64:
			return cmpOrdered(a, b)
		case float64:
			return cmpOrdered(float64(a), b)
		}
	case float64:
		switch b := b.(type) {
		case int64:
			return cmpOrdered(a, float64(b))
		case float64:
			return cmpOrdered(a, b)
		}
	case time.Time:
		if b, ok := b.(time.Time); ok {
			return a.Compare(b)
		}
	}
	return 0
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareFold compares strings as if both were lower-cased, without allocating.
func compareFold(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			la, lb := unicode.ToLower(ra), unicode.ToLower(rb)
			if la != lb {
				return cmpOrdered(int64(la), int64(lb))
			}
		}
		a, b = a[na:], b[nb:]
	}
	return cmpOrdered(int64(len(a)), int64(len(b)))
}

// parseFilter compiles $filter for a table; "" is no filter. Navigation paths
// (sdkmessageid/name) need reg and rows; without them they answer 501.
func parseFilter(t *table, s string) (filterNode, error) { return parseFilterNav(t, s, nil, nil) }

// parseFilterNav compiles $filter with one level of single-valued navigation
// paths, "<navigation property>/<column>", as §7.6 queries sdkmessagefilters.
func parseFilterNav(t *table, s string, reg *registry, rows rowFunc) (filterNode, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	p := &filterParser{t: t, src: s, reg: reg, rows: rows}
	if err := p.advance(); err != nil {
		return nil, err
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.syntaxError(p.tok.pos)
	}
	return n, nil
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokIdent
	tokString
	tokNumber
	tokGUID
	tokDate
	tokDateTime
	tokLParen
	tokRParen
	tokComma
)

type token struct {
	kind tokKind
	text string // identifier, raw number or literal text; unescaped string
	pos  int
}

type filterParser struct {
	t    *table
	reg  *registry
	rows rowFunc
	src  string
	pos  int
	tok  token
}

func (p *filterParser) syntaxError(pos int) error {
	return errorf(http.StatusBadRequest, codeODataBadRequest, "Syntax error at position %d in '%s'.", pos, p.src)
}

// advance reads the next token into p.tok.
func (p *filterParser) advance() error {
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t') {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(s) {
		p.tok = token{kind: tokEOF, pos: start}
		return nil
	}
	c := s[p.pos]
	switch {
	case c == '(':
		p.pos++
		p.tok = token{kind: tokLParen, pos: start}
	case c == ')':
		p.pos++
		p.tok = token{kind: tokRParen, pos: start}
	case c == ',':
		p.pos++
		p.tok = token{kind: tokComma, pos: start}
	case c == '\'':
		var b strings.Builder
		p.pos++
		for {
			if p.pos >= len(s) {
				return errorf(http.StatusBadRequest, codeODataBadRequest, "There is an unterminated string literal at position %d in '%s'.", start, s)
			}
			if s[p.pos] == '\'' {
				if p.pos+1 < len(s) && s[p.pos+1] == '\'' {
					b.WriteByte('\'')
					p.pos += 2
					continue
				}
				p.pos++
				break
			}
			b.WriteByte(s[p.pos])
			p.pos++
		}
		p.tok = token{kind: tokString, text: b.String(), pos: start}
	default:
		end := p.pos
		for end < len(s) && !strings.ContainsRune(" \t(),'", rune(s[end])) {
			end++
		}
		word := s[p.pos:end]
		if word == "" {
			return p.syntaxError(start)
		}
		p.pos = end
		p.tok = token{kind: classify(word), text: word, pos: start}
		if p.tok.kind == tokEOF {
			return errorf(http.StatusBadRequest, codeODataBadRequest, "Syntax error: character '%c' is not valid at position %d in '%s'.", word[0], start, s)
		}
	}
	return nil
}

// classify tells what a bare word is: a GUID, a date or date-time, a number or an
// identifier; tokEOF marks a word that is none of these.
func classify(w string) tokKind {
	if _, ok := parseGUID(w); ok {
		return tokGUID
	}
	if len(w) >= 10 && isDigits(w[:4]) && w[4] == '-' && isDigits(w[5:7]) && w[7] == '-' && isDigits(w[8:10]) {
		if len(w) == 10 {
			return tokDate
		}
		return tokDateTime
	}
	if c := w[0]; c == '-' || (c >= '0' && c <= '9') {
		return tokNumber
	}
	for i, r := range w {
		if !(r == '_' || unicode.IsLetter(r) || (i > 0 && (unicode.IsDigit(r) || r == '.' || r == '/'))) {
			return tokEOF
		}
	}
	return tokIdent
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (p *filterParser) isWord(w string) bool { return p.tok.kind == tokIdent && p.tok.text == w }

func (p *filterParser) or() (filterNode, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.isWord("or") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orNode{l, r}
	}
	return l, nil
}

func (p *filterParser) and() (filterNode, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.isWord("and") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = andNode{l, r}
	}
	return l, nil
}

func (p *filterParser) unary() (filterNode, error) {
	if p.isWord("not") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	}
	return p.comparison()
}

var opKinds = map[string]string{
	"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan", "le": "LessThanOrEqual",
}

func (p *filterParser) comparison() (filterNode, error) {
	if p.tok.kind == tokLParen {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "')' or operator expected at position %d in '%s'.", p.tok.pos, p.src)
		}
		return n, p.advance()
	}
	if p.tok.kind == tokIdent && p.pos < len(p.src) && p.src[p.pos] == '(' {
		return p.function()
	}
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	op := p.tok.text
	kind, isOp := opKinds[op]
	if p.tok.kind != tokIdent || !isOp {
		if l.edm() == "Edm.Boolean" {
			return boolNode{l}, nil
		}
		return nil, p.syntaxError(p.tok.pos)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	r, err := p.operand()
	if err != nil {
		return nil, err
	}
	if !compatible(l.edm(), r.edm()) {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest,
			"A binary operator with incompatible types was detected. Found operand types '%s' and '%s' for operator kind '%s'.", l.edm(), r.edm(), kind)
	}
	return compareNode{op: op, l: l, r: r}, nil
}

// compatible says whether two Edm types can be compared; null (kind "") goes with
// anything, numbers with numbers, dates with date-times.
func compatible(a, b string) bool {
	if a == "" || b == "" || a == b {
		return true
	}
	class := func(t string) string {
		switch t {
		case "Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double":
			return "number"
		case "Edm.Date", "Edm.DateTimeOffset":
			return "time"
		}
		return t
	}
	return class(a) == class(b)
}

// function reads contains/startswith/endswith(<string column>, '<literal>').
func (p *filterParser) function() (filterNode, error) {
	name, pos := p.tok.text, p.tok.pos
	switch name {
	case "contains", "startswith", "endswith":
	default:
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "An unknown function with name '%s' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed.", name)
	}
	if err := p.advance(); err != nil { // name
		return nil, err
	}
	if err := p.advance(); err != nil { // (
		return nil, err
	}
	arg, err := p.operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokComma {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "No function signature for the function with name '%s' matches the specified arguments.", name)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	lit, err := p.operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokRParen {
		return nil, p.syntaxError(p.tok.pos)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	s, isString := lit.lit.(string)
	if arg.col == nil || arg.edm() != "Edm.String" || lit.col != nil || !isString || lit.kind != "Edm.String" {
		return nil, errorf(http.StatusBadRequest, codeODataBadRequest, "No function signature for the function with name '%s' matches the specified arguments (at position %d).", name, pos)
	}
	return funcNode{name: name, arg: arg, lower: strings.ToLower(s)}, nil
}

// operand reads a column name or a literal.
func (p *filterParser) operand() (operand, error) {
	tok := p.tok
	o := operand{pos: tok.pos}
	switch tok.kind {
	case tokString:
		o.lit, o.kind = tok.text, "Edm.String"
	case tokGUID:
		id, _ := parseGUID(tok.text)
		o.lit, o.kind = id, "Edm.Guid"
	case tokDate:
		tm, err := time.Parse(dateLayout, tok.text)
		if err != nil {
			return o, errorf(http.StatusBadRequest, codeODataBadRequest, "Unrecognized 'Edm.Date' literal '%s' at '%d' in '%s'.", tok.text, tok.pos, p.src)
		}
		o.lit, o.kind = tm, "Edm.Date"
	case tokDateTime:
		tm, err := time.Parse(time.RFC3339Nano, tok.text)
		if err != nil {
			return o, errorf(http.StatusBadRequest, codeODataBadRequest, "Unrecognized 'Edm.DateTimeOffset' literal '%s' at '%d' in '%s'.", tok.text, tok.pos, p.src)
		}
		o.lit, o.kind = tm.UTC(), "Edm.DateTimeOffset"
	case tokNumber:
		text := strings.TrimRight(tok.text, "mMlLdDfF")
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			o.lit, o.kind = n, "Edm.Int64"
			if n >= -1<<31 && n < 1<<31 {
				o.kind = "Edm.Int32"
			}
		} else if f, err := strconv.ParseFloat(text, 64); err == nil {
			o.lit, o.kind = f, "Edm.Decimal"
		} else {
			return o, errorf(http.StatusBadRequest, codeODataBadRequest, "Syntax error: character '%s' is not valid at position %d in '%s'.", tok.text, tok.pos, p.src)
		}
	case tokIdent:
		switch tok.text {
		case "null":
			o.lit, o.kind = nil, ""
		case "true", "false":
			o.lit, o.kind = tok.text == "true", "Edm.Boolean"
		default:
			if navName, prop, ok := strings.Cut(tok.text, "/"); ok {
				if err := p.navigation(&o, navName, prop); err != nil {
					return o, err
				}
				break
			}
			c, ok := p.t.readable(tok.text)
			if !ok {
				return o, errNoProperty(p.t, tok.text)
			}
			o.col = c
		}
	default:
		return o, p.syntaxError(tok.pos)
	}
	return o, p.advance()
}

// navigation resolves "<navigation property>/<column>" into o: a single-valued
// navigation property of the table (one target) and a readable column there.
func (p *filterParser) navigation(o *operand, navName, prop string) error {
	if p.reg == nil || p.rows == nil || strings.Contains(prop, "/") {
		return errNotImplemented("the navigation path '" + navName + "/" + prop + "' in $filter")
	}
	nr, ok := p.t.byNav[navName]
	if !ok {
		return errNoProperty(p.t, navName)
	}
	if len(nr.nav.targets) != 1 {
		return errNotImplemented("navigation paths through polymorphic lookups ('" + navName + "')")
	}
	target := p.reg.byName[nr.nav.targets[0]]
	if target == nil {
		return errSegment(nr.nav.targets[0])
	}
	c, ok := target.readable(prop)
	if !ok {
		return errNoProperty(target, prop)
	}
	o.col, o.via, o.to, o.rows = c, nr.col, target.logical, p.rows
	return nil
}
