package schema

import (
	"encoding/binary"
	"fmt"
)

// Bounds of a msgpack value read from outside. A msgpack header declares the
// length of what follows (4294967295 array elements in five bytes), and the
// decoder allocates for the declared length before it reads the elements:
// msgpack/v5 v5.4.1 never applies its own allocation limit to slices, so a
// 68-byte order could ask for 96 GB. CheckMsgpack walks the encoded value
// first, without allocating, and refuses any length the bytes cannot hold.
//
// JSON needs no such walk: encoding/json allocates in proportion to the
// bytes it has read, so the message size limit of the stream bounds it.
const (
	// MaxDepth is the deepest nesting of arrays and maps accepted.
	MaxDepth = 64
	// MaxDecodedSize bounds the estimated memory of a decoded value, in
	// bytes: every array element counts elementCost, every map entry
	// entryCost, every byte of a string, binary or extension one. Since
	// every element takes at least one byte of input, the estimate of a
	// value that passes the length checks is at most entryCost/2 times its
	// size; this limit refuses inputs of several MiB made of tiny elements.
	MaxDecodedSize = 64 << 20

	elementCost = 32 // a Go interface or small struct in a slice
	entryCost   = 96 // a key, a value and a map's overhead
)

// frame is an open array or map during CheckMsgpack: the items still to
// read (a map counts keys and values) and whether it is a map.
type frame struct {
	left  uint64
	isMap bool
}

// walker is the state of one CheckMsgpack.
type walker struct {
	b     []byte
	pos   int
	size  uint64
	depth int
	stack [MaxDepth + 1]frame // stack[depth] is the innermost open container
}

// CheckMsgpack walks the single msgpack value at the start of b without
// decoding it and reports the first problem that would make a decoder
// allocate more than b can hold: an array, map, string, binary or
// extension declaring more than the bytes that remain (an array of n
// elements needs at least n bytes, a map of n entries 2n), nesting deeper
// than MaxDepth, an estimated decoded size above MaxDecodedSize, a map key
// that is itself an array or map (a generic decoder cannot hash it), or a
// value cut short. Bytes after the value are left to the caller.
func CheckMsgpack(b []byte) error {
	w := walker{b: b}
	w.stack[0] = frame{left: 1}
	for {
		for w.stack[w.depth].left == 0 {
			if w.depth == 0 {
				return nil
			}
			w.depth--
		}
		top := &w.stack[w.depth]
		// A map's items alternate key, value: an even count left means a key.
		isKey := top.isMap && top.left%2 == 0
		top.left--
		if err := w.item(isKey); err != nil {
			return err
		}
		if w.size > MaxDecodedSize {
			return fmt.Errorf("msgpack: decoded size over %d bytes (at byte %d)", MaxDecodedSize, w.pos)
		}
	}
}

func (w *walker) remain() uint64 { return uint64(len(w.b) - w.pos) }

// item checks the header of the next value and passes over its data, or
// opens it when it is an array or a map.
func (w *walker) item(isKey bool) error {
	if w.pos >= len(w.b) {
		return fmt.Errorf("msgpack: unexpected end of data at byte %d", w.pos)
	}
	at, c := w.pos, w.b[w.pos]
	w.pos++
	switch {
	case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		return nil
	case c <= 0x8f:
		return w.open(at, isKey, true, uint64(c&0x0f))
	case c <= 0x9f:
		return w.open(at, isKey, false, uint64(c&0x0f))
	case c <= 0xbf:
		return w.skip("str", uint64(c&0x1f))
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return nil
	case 0xc4, 0xc5, 0xc6:
		return w.sized("bin", 1<<(c-0xc4), 0)
	case 0xc7, 0xc8, 0xc9: // ext: length, then a type byte and the data
		return w.sized("ext", 1<<(c-0xc7), 1)
	case 0xca, 0xcb: // float32, float64
		return w.skip("float", 4<<(c-0xca))
	case 0xcc, 0xcd, 0xce, 0xcf:
		return w.skip("uint", 1<<(c-0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3:
		return w.skip("int", 1<<(c-0xd0))
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1-16, after a type byte
		return w.skip("fixext", 1+1<<(c-0xd4))
	case 0xd9, 0xda, 0xdb:
		return w.sized("str", 1<<(c-0xd9), 0)
	case 0xdc, 0xdd, 0xde, 0xdf:
		isMap := c >= 0xde
		n, err := w.length(2 << ((c - 0xdc) % 2))
		if err != nil {
			return err
		}
		return w.open(at, isKey, isMap, n)
	}
	return fmt.Errorf("msgpack: invalid code 0x%02x at byte %d", c, at)
}

// length reads a big-endian length of width bytes.
func (w *walker) length(width int) (uint64, error) {
	if len(w.b)-w.pos < width {
		return 0, fmt.Errorf("msgpack: unexpected end of data at byte %d", len(w.b))
	}
	var n uint64
	switch width {
	case 1:
		n = uint64(w.b[w.pos])
	case 2:
		n = uint64(binary.BigEndian.Uint16(w.b[w.pos:]))
	case 4:
		n = uint64(binary.BigEndian.Uint32(w.b[w.pos:]))
	}
	w.pos += width
	return n, nil
}

// sized passes over a what whose length is written in width bytes and is
// followed by extra bytes (an extension's type) and the data.
func (w *walker) sized(what string, width int, extra uint64) error {
	n, err := w.length(width)
	if err != nil {
		return err
	}
	if n+extra > w.remain() {
		return fmt.Errorf("msgpack: %s declares %d bytes, %d bytes remain", what, n, w.remain())
	}
	return w.skip(what, n+extra)
}

// skip passes over n bytes of a what.
func (w *walker) skip(what string, n uint64) error {
	if n > w.remain() {
		return fmt.Errorf("msgpack: %s at byte %d needs %d bytes, %d bytes remain", what, w.pos-1, n, w.remain())
	}
	w.pos += int(n)
	w.size += n
	return nil
}

// open starts an array of n elements or a map of n entries whose header
// began at byte at.
func (w *walker) open(at int, isKey, isMap bool, n uint64) error {
	what, unit, items, cost := "array", "elements", n, uint64(elementCost)
	if isMap {
		what, unit, items, cost = "map", "entries", 2*n, entryCost
	}
	if items > w.remain() {
		return fmt.Errorf("msgpack: %s declares %d %s, %d bytes remain", what, n, unit, w.remain())
	}
	if isKey {
		return fmt.Errorf("msgpack: map key at byte %d is not a scalar (%s)", at, what)
	}
	if w.depth+1 > MaxDepth {
		return fmt.Errorf("msgpack: %s at byte %d nests deeper than %d levels", what, at, MaxDepth)
	}
	w.size += n * cost
	w.depth++
	w.stack[w.depth] = frame{left: items, isMap: isMap}
	return nil
}
