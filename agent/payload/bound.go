package payload

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Bounds on a plist's shape, checked before it is decoded: a binary plist can
// share one child between many parents, so a few hundred bytes can expand to
// hundreds of millions of objects when decoded into a tree.
const (
	MaxObjects = 100_000 // objects of the decoded tree, shared ones counted each time
	MaxDepth   = 32      // nesting of arrays and dictionaries
)

// ErrTooComplex is wrapped when a plist would decode to more than MaxObjects
// objects or nest deeper than MaxDepth.
var ErrTooComplex = errors.New("property list too large or too deep once decoded")

// checkBounds refuses data whose decoded tree would pass MaxObjects or
// MaxDepth, at a cost linear in len(data). Binary plists are measured on
// their object table, XML on its elements, text (OpenStep) plists on their
// brackets; the last cannot share objects, so only their depth is bounded.
func checkBounds(data []byte) error {
	switch {
	case bytes.HasPrefix(data, []byte("bplist")):
		return checkBinary(data)
	case isXML(data):
		return checkXML(data)
	}
	return checkTextPlist(data)
}

// checkTextPlist bounds a text (OpenStep) plist, which Parse refuses as a
// payload but the decoder reads first, and which a decrypted credential may
// be. The decoder nests once per ( or {; telling the brackets inside strings
// and comments from the others would mean copying its tokenizer (a comment
// may hold a quote, an unquoted string or base64 data may hold "//"), so
// every ( and { counts wherever it stands. A credential plist holds one.
func checkTextPlist(data []byte) error {
	if n := bytes.Count(data, []byte("(")) + bytes.Count(data, []byte("{")); n > MaxDepth+1 {
		return tooComplex(fmt.Sprintf("a text plist with %d brackets, which could nest deeper than %d levels", n, MaxDepth))
	}
	return nil
}

func isXML(data []byte) bool {
	d := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	return len(d) > 0 && d[0] == '<'
}

func tooComplex(what string) error {
	return fmt.Errorf("%w: %s (limits: %d objects, depth %d)", ErrTooComplex, what, MaxObjects, MaxDepth)
}

// checkXML counts the elements of an XML plist and their nesting (the
// outermost <plist> wrapper aside; a <plist> inside it is a level like any
// other, since the decoder descends into it).
func checkXML(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = false
	objects, depth := 0, 0
	var counted []bool // per open element: whether it is an object (not the wrapper)
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			wrapper := t.Name.Local == "plist" && len(counted) == 0
			counted = append(counted, !wrapper)
			if wrapper {
				continue
			}
			objects++
			depth++
			if objects > MaxObjects {
				return tooComplex(fmt.Sprintf("more than %d elements", MaxObjects))
			}
			if depth > MaxDepth+1 { // a value inside the deepest container is one more
				return tooComplex(fmt.Sprintf("nested deeper than %d levels", MaxDepth))
			}
		case xml.EndElement:
			if n := len(counted); n > 0 {
				if counted[n-1] {
					depth--
				}
				counted = counted[:n-1]
			}
		}
	}
}

// bplist is a binary plist's object table (the "bplist00" format: objects,
// then an offset table, then a 32-byte trailer).
type bplist struct {
	data    []byte
	offsets []uint64 // object number → offset of its marker byte
	refSize int
	// expanded holds each object's size in the decoded tree (itself and
	// everything below it, shared children counted each time); 0 = not yet
	// known. height holds its nesting height.
	expanded []int
	height   []int8
	visiting []bool
}

// checkBinary walks the offset table and the references from the top object,
// once per object thanks to memoisation, and refuses a tree that would pass
// the bounds. A cycle is refused as too deep.
func checkBinary(data []byte) error {
	const trailer = 32
	if len(data) < 8+trailer {
		return errors.New("binary plist shorter than its header and trailer")
	}
	t := data[len(data)-trailer:]
	offSize, refSize := int(t[6]), int(t[7])
	n, top, tableAt := binary.BigEndian.Uint64(t[8:]), binary.BigEndian.Uint64(t[16:]), binary.BigEndian.Uint64(t[24:])
	end := uint64(len(data) - trailer)
	switch {
	case offSize < 1 || offSize > 8 || refSize < 1 || refSize > 8:
		return errors.New("binary plist trailer: bad offset or reference size")
	case n == 0 || top >= n:
		return errors.New("binary plist trailer: bad object count or top object")
	case tableAt < 8 || tableAt > end || n > (end-tableAt)/uint64(offSize):
		return errors.New("binary plist trailer: offset table outside the file")
	}
	p := &bplist{data: data[:tableAt], offsets: make([]uint64, n), refSize: refSize,
		expanded: make([]int, n), height: make([]int8, n), visiting: make([]bool, n)}
	for i := range p.offsets {
		p.offsets[i] = readUint(data[tableAt+uint64(i*offSize):], offSize)
		if p.offsets[i] < 8 || p.offsets[i] >= tableAt {
			return fmt.Errorf("binary plist: object %d lies outside the object area", i)
		}
	}
	size, err := p.walk(top, 0)
	if err != nil {
		return err
	}
	if size > MaxObjects {
		return tooComplex(fmt.Sprintf("%d objects once decoded or more", size))
	}
	return nil
}

// walk returns the expanded size of object o, reached at nesting level
// depth. Sizes saturate just above MaxObjects.
func (p *bplist) walk(o uint64, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, tooComplex(fmt.Sprintf("nested deeper than %d levels (or a reference cycle)", MaxDepth))
	}
	if p.expanded[o] > 0 {
		if depth+int(p.height[o]) > MaxDepth {
			return 0, tooComplex(fmt.Sprintf("nested deeper than %d levels", MaxDepth))
		}
		return p.expanded[o], nil
	}
	if p.visiting[o] {
		return 0, tooComplex("a reference cycle")
	}
	refs, err := p.children(o)
	if err != nil {
		return 0, err
	}
	p.visiting[o] = true
	size, height := 1, 0
	for i := 0; i < len(refs); i += p.refSize {
		c := readUint(refs[i:], p.refSize)
		if c >= uint64(len(p.offsets)) {
			return 0, fmt.Errorf("binary plist: object %d refers to object %d of %d", o, c, len(p.offsets))
		}
		s, err := p.walk(c, depth+1)
		if err != nil {
			return 0, err
		}
		size = min(size+s, MaxObjects+1)
		height = max(height, int(p.height[c])+1)
		if size > MaxObjects {
			return 0, tooComplex(fmt.Sprintf("more than %d objects once decoded", MaxObjects))
		}
	}
	p.visiting[o] = false
	p.expanded[o], p.height[o] = size, int8(min(height, MaxDepth+1))
	return size, nil
}

// children returns the reference bytes of a container object (array, set,
// dictionary: keys then values), or nil for any other object. The length of
// data and strings is checked too: the decoder trusts it, so a count that
// overflows its arithmetic would crash it (a runtime panic it re-raises).
func (p *bplist) children(o uint64) ([]byte, error) {
	at := p.offsets[o]
	marker := p.data[at]
	kind, count := marker>>4, uint64(marker&0x0f)
	var unit uint64 // bytes per counted item
	switch kind {
	case 0x4, 0x5: // data, ASCII string
		unit = 1
	case 0x6: // UTF-16 string
		unit = 2
	case 0xA, 0xB, 0xC: // array, ordered set, set
		unit = uint64(p.refSize)
	case 0xD: // dictionary
		unit = 2 * uint64(p.refSize)
	default:
		return nil, nil
	}
	at++
	if count == 0x0f { // the count follows as an integer object
		if at >= uint64(len(p.data)) || p.data[at]>>4 != 0x1 {
			return nil, fmt.Errorf("binary plist: object %d has a malformed count", o)
		}
		width := uint64(1) << (p.data[at] & 0x0f)
		if width > 8 || at+1+width > uint64(len(p.data)) {
			return nil, fmt.Errorf("binary plist: object %d has a malformed count", o)
		}
		count = readUint(p.data[at+1:], int(width))
		at += 1 + width
	}
	if count > (uint64(len(p.data))-at)/unit {
		return nil, fmt.Errorf("binary plist: object %d is longer than the file", o)
	}
	if kind < 0xA {
		return nil, nil
	}
	return p.data[at : at+count*unit], nil
}

// readUint reads a big-endian unsigned integer of width bytes (1 to 8).
func readUint(b []byte, width int) uint64 {
	var v uint64
	for _, c := range b[:width] {
		v = v<<8 | uint64(c)
	}
	return v
}
