// Package plisttest builds hostile property lists for tests of rekey's
// plist bounds.
package plisttest

import "encoding/binary"

// Bomb returns a binary plist of a few hundred bytes whose top dictionary's
// Credentials value is levels nested arrays, each holding width references to
// one shared child: it decodes to about width^levels objects. width is at
// most 14 (the count fits in the marker byte).
func Bomb(levels, width int) []byte {
	return build(levels, width, false)
}

// Cycle returns a binary plist whose Credentials array holds itself.
func Cycle() []byte {
	return build(1, 1, true)
}

func build(levels, width int, cycle bool) []byte {
	out := []byte("bplist00")
	var offsets []int
	add := func(obj ...byte) int {
		offsets = append(offsets, len(out))
		out = append(out, obj...)
		return len(offsets) - 1
	}
	prev := add(0x50) // the shared leaf: an empty string
	for range levels {
		arr := []byte{0xA0 | byte(width)}
		for range width {
			arr = append(arr, byte(prev))
		}
		if cycle {
			arr[1] = byte(len(offsets)) // the array refers to itself
		}
		prev = add(arr...)
	}
	key := add(append([]byte{0x5B}, "Credentials"...)...)
	top := add(0xD1, byte(key), byte(prev))
	table := len(out)
	for _, o := range offsets {
		out = append(out, byte(o))
	}
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = 1, 1 // offset and reference sizes
	binary.BigEndian.PutUint64(trailer[8:], uint64(len(offsets)))
	binary.BigEndian.PutUint64(trailer[16:], uint64(top))
	binary.BigEndian.PutUint64(trailer[24:], uint64(table))
	return append(out, trailer...)
}

// Overlong returns a binary plist whose only object is a data (0x4), ASCII
// string (0x5) or UTF-16 string (0x6) object, after marker, whose length
// field claims count items although the file holds four bytes of content.
func Overlong(marker byte, count uint64) []byte {
	out := []byte("bplist00")
	obj := len(out)
	out = append(out, marker<<4|0x0f, 0x13) // the count follows as an 8-byte integer
	out = binary.BigEndian.AppendUint64(out, count)
	out = append(out, "abcd"...)
	table := len(out)
	out = append(out, byte(obj))
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = 1, 1
	binary.BigEndian.PutUint64(trailer[8:], 1)
	binary.BigEndian.PutUint64(trailer[24:], uint64(table))
	return append(out, trailer...)
}
