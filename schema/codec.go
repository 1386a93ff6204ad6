package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec encodes values to bytes and back. The engine uses Msgpack; the
// interface exists so tests and tools can swap or wrap it.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
	// ContentType is the value of the Content-Type header for this codec.
	ContentType() string
}

// Msgpack is the codec jetflow writes with. Structs are encoded as maps keyed
// by their msgpack tags, so adding a field is backwards compatible.
var Msgpack Codec = msgpackCodec{}

type msgpackCodec struct{}

// encoding is a reusable encoder with its output buffer.
type encoding struct {
	enc *msgpack.Encoder
	buf bytes.Buffer
}

// encodings and decodings reuse encoders and decoders: a new one of each
// was a tenth of the allocations of an order, and the output buffer's
// growth another few percent.
var (
	encodings = sync.Pool{New: func() any {
		e := &encoding{}
		e.enc = msgpack.NewEncoder(&e.buf)
		return e
	}}
	decodings = sync.Pool{New: func() any { return &decoding{dec: msgpack.NewDecoder(nil)} }}
)

// maxPooledBuffer bounds the output buffer an encoding keeps for reuse.
const maxPooledBuffer = 64 << 10

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	e := encodings.Get().(*encoding)
	e.buf.Reset()
	e.enc.Reset(&e.buf)
	e.enc.SetSortMapKeys(true)
	e.enc.UseCompactInts(true)
	err := e.enc.Encode(v)
	var out []byte
	if err == nil {
		out = bytes.Clone(e.buf.Bytes())
	}
	if e.buf.Cap() <= maxPooledBuffer {
		encodings.Put(e)
	}
	return out, err
}

// decoding is a reusable decoder with its reader.
type decoding struct {
	dec *msgpack.Decoder
	r   bytes.Reader
}

// Unmarshal refuses what CheckMsgpack refuses before it decodes anything:
// every caller of it (Decode, DecodeRaw, a participant's Command.Decode, the
// idempotency records) reads bytes that came from outside the process.
func (msgpackCodec) Unmarshal(data []byte, v any) error {
	return unmarshal(data, v, false)
}

// UnmarshalStrict decodes data into v as Msgpack.Unmarshal does, and also
// refuses fields v does not have, so a typo does not silently drop data.
func UnmarshalStrict(data []byte, v any) error {
	return unmarshal(data, v, true)
}

func unmarshal(data []byte, v any, strict bool) (err error) {
	if err := CheckMsgpack(data); err != nil {
		return err
	}
	// The decoder panics on some inputs (a nil where a struct is expected
	// in an array-encoded struct): that is a bad message, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: %v", r)
		}
	}()
	d := decodings.Get().(*decoding)
	d.r.Reset(data)
	d.dec.Reset(&d.r)
	d.dec.DisallowUnknownFields(strict)
	if err := d.dec.Decode(v); err != nil {
		// Not reused: a decoder that failed part way may hold state.
		return err
	}
	trailing := d.r.Len()
	d.r.Reset(nil)
	d.dec.Reset(nil)
	decodings.Put(d)
	if trailing > 0 {
		return fmt.Errorf("msgpack: %d trailing bytes", trailing)
	}
	return nil
}

func (msgpackCodec) ContentType() string { return ContentTypeMsgpack }

// Raw is an already-encoded msgpack value embedded in another message. It is
// written inline, so a generic decoder sees the nested value, and it renders
// as that value in JSON.
type Raw = msgpack.RawMessage

// EncodeRaw encodes v with Msgpack for use as a Raw field.
func EncodeRaw(v any) (Raw, error) {
	if v == nil {
		return nil, nil
	}
	b, err := Msgpack.Marshal(v)
	return Raw(b), err
}

// DecodeRaw decodes a Raw field into v. An empty Raw leaves v untouched.
func DecodeRaw(r Raw, v any) error {
	if len(r) == 0 {
		return nil
	}
	return Msgpack.Unmarshal(r, v)
}

// Encode encodes a persisted value and returns the header values that name it.
func Encode(v Kinded) (body []byte, kind Kind, err error) {
	body, err = Msgpack.Marshal(v)
	return body, v.Kind(), err
}

// SchemaString is the header value of the current schema version.
var SchemaString = strconv.Itoa(Version)

// Decode decodes a body whose kind and schema version were read from the
// message headers. An empty version is taken as 1.
func Decode(kind, version string, body []byte) (Kinded, error) {
	if version != "" {
		n, err := strconv.Atoi(version)
		if err != nil {
			return nil, fmt.Errorf("jetflow: bad schema version %q", version)
		}
		if n > Version {
			return nil, fmt.Errorf("%w: %d (this build knows %d)", ErrFutureSchema, n, Version)
		}
	}
	v, err := New(Kind(kind))
	if err != nil {
		return nil, err
	}
	if err := Msgpack.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("jetflow: decode %s: %w", kind, err)
	}
	if op, ok := v.(*OperatorRequest); ok && op.Kind() != Kind(kind) {
		return nil, fmt.Errorf("jetflow: decode %s: body names verb %q", kind, op.Verb)
	}
	return v, nil
}

// ToJSON renders any msgpack body as indented-free JSON, for people and for
// `nats stream view --translate`. Binary strings that are not UTF-8 are
// rendered as base64.
func ToJSON(body []byte) ([]byte, error) {
	v, err := decodeLoose(body)
	if err != nil {
		return nil, err
	}
	return json.Marshal(jsonable(v))
}

// decodeLoose decodes body into a generic tree, within the bounds of
// CheckMsgpack.
func decodeLoose(body []byte) (v any, err error) {
	if err := CheckMsgpack(body); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: %v", r)
		}
	}()
	r := bytes.NewReader(body)
	dec := msgpack.NewDecoder(r)
	dec.UseLooseInterfaceDecoding(true)
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if r.Len() > 0 {
		return nil, fmt.Errorf("msgpack: %d trailing bytes", r.Len())
	}
	return v, nil
}

// jsonable converts the generic msgpack tree into values encoding/json
// accepts (msgpack maps may have non-string keys).
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	case []byte:
		return base64.StdEncoding.EncodeToString(t)
	}
	return v
}

// RawJSON renders a Raw field as JSON (null when empty).
func RawJSON(r Raw) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	b, err := ToJSON(r)
	if err != nil {
		return json.RawMessage(strconv.Quote(base64.StdEncoding.EncodeToString(r)))
	}
	return b
}
