package transcode

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// isWrapper reports a google.protobuf wrapper message (StringValue, ...),
// which path variables and query parameters set through its value field.
func isWrapper(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf" && strings.HasSuffix(string(md.Name()), "Value") &&
		md.Fields().Len() == 1 && md.Fields().Get(0).Name() == "value"
}

// setField sets the field at path in msg from a path variable or query
// parameter value. A repeated scalar field gets the value appended.
func setField(msg protoreflect.Message, path []string, value string) error {
	for i, name := range path {
		md := msg.Descriptor()
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return errUnknownField{strings.Join(path, ".")}
		}
		if i < len(path)-1 {
			if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
				return fmt.Errorf("%s: %s is not a message field", strings.Join(path, "."), name)
			}
			msg = msg.Mutable(fd).Message()
			continue
		}
		if fd.IsMap() {
			return fmt.Errorf("%s: a map field cannot be set from a string", strings.Join(path, "."))
		}
		if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
			if fd.IsList() || !isWrapper(fd.Message()) {
				return fmt.Errorf("%s: a message field cannot be set from a string", strings.Join(path, "."))
			}
			sub := msg.Mutable(fd).Message()
			vfd := fd.Message().Fields().Get(0)
			v, err := scalar(vfd, value)
			if err != nil {
				return fmt.Errorf("%s: %v", strings.Join(path, "."), err)
			}
			sub.Set(vfd, v)
			return nil
		}
		v, err := scalar(fd, value)
		if err != nil {
			return fmt.Errorf("%s: %v", strings.Join(path, "."), err)
		}
		if fd.IsList() {
			msg.Mutable(fd).List().Append(v)
		} else {
			msg.Set(fd, v)
		}
	}
	return nil
}

type errUnknownField struct{ path string }

func (e errUnknownField) Error() string { return fmt.Sprintf("no field %q", e.path) }

// scalar parses s as the value of fd, as protojson reads the same value
// written as a JSON string.
func scalar(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	bad := func(err error) (protoreflect.Value, error) {
		if ne, ok := err.(*strconv.NumError); ok {
			err = ne.Err
		}
		return protoreflect.Value{}, fmt.Errorf("invalid %s value %q: %v", fd.Kind(), trunc(s), err)
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		// As protojson, which reads only valid UTF-8 (a path or query
		// value is percent-decoded bytes: %A0 alone is not text); proto
		// would refuse to encode the message for the upstream.
		if !utf8.ValidString(s) {
			return bad(fmt.Errorf("not valid UTF-8"))
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b, err = base64.URLEncoding.DecodeString(s); err != nil {
				return bad(err)
			}
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.BoolKind:
		switch s {
		case "true":
			return protoreflect.ValueOfBool(true), nil
		case "false":
			return protoreflect.ValueOfBool(false), nil
		}
		return bad(fmt.Errorf("expected true or false"))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfFloat32(float32(f)), nil
	case protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) && !strings.Contains(strings.ToLower(s), "inf") {
			if err == nil {
				err = fmt.Errorf("out of range")
			}
			return bad(err)
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad(fmt.Errorf("not a value of %s", fd.Enum().FullName()))
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	}
	return bad(fmt.Errorf("unsupported kind"))
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
