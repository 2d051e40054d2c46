// Package transcodetest runs the test gRPC service of package transcode,
// switchyard.test.library.Library (testdata/library.proto), on loopback
// with grpc-go. There is no generated Go code: the service is a
// grpc.ServiceDesc whose handlers read and write dynamicpb messages of the
// descriptor set (testdata/library.pb), which grpc-go's proto codec
// marshals like generated ones.
package transcodetest

import (
	"context"
	_ "embed" // the descriptor set
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// DescriptorSet is testdata/library.pb (protoc --include_imports).
//
//go:embed testdata/library.pb
var DescriptorSet []byte

// Service is the test service's full name.
const Service = "switchyard.test.library.Library"

// Library is a running test service.
type Library struct {
	// Addr is the server's host:port (h2c, plain gRPC).
	Addr string
	// DescriptorFile is a copy of the descriptor set in a temporary
	// directory, for configs that name a file.
	DescriptorFile string

	files *protoregistry.Files
	mu    sync.Mutex
	// Deadlines are the time left at the start of each Slow call (-1
	// without a deadline).
	deadlines []time.Duration
	// Metadata are the last call's incoming metadata.
	md metadata.MD
}

// Deadlines returns the time left at the start of each Slow call.
func (l *Library) Deadlines() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.deadlines...)
}

// LastMetadata returns the incoming metadata of the last call.
func (l *Library) LastMetadata() metadata.MD {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.md.Copy()
}

// Files returns the descriptor set's files.
func Files(tb testing.TB) *protoregistry.Files {
	tb.Helper()
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(DescriptorSet, &set); err != nil {
		tb.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

// Start runs the service on 127.0.0.1:0 until the test ends.
func Start(tb testing.TB) *Library {
	tb.Helper()
	l := &Library{files: Files(tb)}
	dir := tb.TempDir()
	l.DescriptorFile = filepath.Join(dir, "library.pb")
	if err := os.WriteFile(l.DescriptorFile, DescriptorSet, 0o600); err != nil {
		tb.Fatal(err)
	}
	d, err := l.files.FindDescriptorByName(Service)
	if err != nil {
		tb.Fatal(err)
	}
	sd := d.(protoreflect.ServiceDescriptor)
	desc := grpc.ServiceDesc{ServiceName: Service, HandlerType: (*any)(nil)}
	for i := 0; i < sd.Methods().Len(); i++ {
		m := sd.Methods().Get(i)
		switch {
		case m.IsStreamingClient():
			desc.Streams = append(desc.Streams, grpc.StreamDesc{StreamName: string(m.Name()), ClientStreams: true,
				Handler: func(any, grpc.ServerStream) error { return status.Error(codes.Unimplemented, "upload is not served") }})
		case m.IsStreamingServer():
			desc.Streams = append(desc.Streams, grpc.StreamDesc{StreamName: string(m.Name()), ServerStreams: true,
				Handler: func(_ any, ss grpc.ServerStream) error {
					in := dynamicpb.NewMessage(m.Input())
					if err := ss.RecvMsg(in); err != nil {
						return err
					}
					l.record(ss.Context())
					return l.watch(m, in, ss)
				}})
		default:
			desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: string(m.Name()),
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					in := dynamicpb.NewMessage(m.Input())
					if err := dec(in); err != nil {
						return nil, err
					}
					l.record(ctx)
					return l.unary(ctx, m, in)
				}})
		}
	}
	srv := grpc.NewServer()
	srv.RegisterService(&desc, l)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l.Addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(srv.Stop)
	return l
}

func (l *Library) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	l.mu.Lock()
	l.md = md
	l.mu.Unlock()
}

// get reads a field by name from a dynamic message.
func get(m protoreflect.Message, name string) protoreflect.Value {
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
}

func set(m protoreflect.Message, name string, v protoreflect.Value) {
	m.Set(m.Descriptor().Fields().ByName(protoreflect.Name(name)), v)
}

func (l *Library) book(out protoreflect.MessageDescriptor, shelf string, id int64, title string) *dynamicpb.Message {
	b := dynamicpb.NewMessage(out)
	set(b, "shelf", protoreflect.ValueOfString(shelf))
	set(b, "id", protoreflect.ValueOfInt64(id))
	set(b, "title", protoreflect.ValueOfString(title))
	return b
}

// unary answers:
//   - GetBook: shelf "missing" NOT_FOUND, "denied" PERMISSION_DENIED,
//     "exists" ALREADY_EXISTS, book_id 0 INVALID_ARGUMENT; otherwise the
//     book {shelf, id, title "book-<id>"}, with response header
//     x-library-shelf.
//   - CreateBook, UpdateBook: the book back, shelf from the request.
//   - ListBooks: one book per tag (title = tag) on shelf (or name).
//   - Slow: waits for its deadline.
func (l *Library) unary(ctx context.Context, m protoreflect.MethodDescriptor, in *dynamicpb.Message) (proto.Message, error) {
	switch m.Name() {
	case "GetBook":
		shelf, id := get(in, "shelf").String(), get(in, "book_id").Int()
		switch shelf {
		case "missing":
			return nil, status.Errorf(codes.NotFound, "no book %d on shelf %q: ünïcode\nand a newline", id, shelf)
		case "denied":
			return nil, status.Error(codes.PermissionDenied, "shelf is private")
		case "exists":
			return nil, status.Error(codes.AlreadyExists, "already there")
		}
		if id == 0 {
			return nil, status.Error(codes.InvalidArgument, "book_id must be set")
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-library-shelf", shelf))
		return l.book(m.Output(), shelf, id, fmt.Sprintf("book-%d", id)), nil
	case "CreateBook":
		b := dynamicpb.NewMessage(m.Output())
		if src := get(in, "book").Message(); src.IsValid() {
			proto.Merge(b, src.Interface())
		}
		set(b, "shelf", get(in, "shelf"))
		return b, nil
	case "UpdateBook":
		return in, nil
	case "ListBooks":
		out := dynamicpb.NewMessage(m.Output())
		shelf := get(in, "shelf").String()
		if shelf == "" {
			shelf = get(in, "name").String()
		}
		list := out.Mutable(out.Descriptor().Fields().ByName("books")).List()
		tags := get(in, "tags").List()
		for i := 0; i < tags.Len(); i++ {
			list.Append(protoreflect.ValueOfMessage(l.book(m.Output().Fields().ByName("books").Message(), shelf, int64(i+1), tags.Get(i).String())))
		}
		set(out, "next_page_token", protoreflect.ValueOfString("tok"))
		return out, nil
	case "Slow":
		dl, ok := ctx.Deadline()
		left := time.Duration(-1)
		if ok {
			left = time.Until(dl)
		}
		l.mu.Lock()
		l.deadlines = append(l.deadlines, left)
		l.mu.Unlock()
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return nil, status.Errorf(codes.Unimplemented, "%s", m.Name())
}

// watch sends page_size books; on shelf "fail" it then fails UNAVAILABLE,
// on "fail-first" it fails before any book.
func (l *Library) watch(m protoreflect.MethodDescriptor, in *dynamicpb.Message, ss grpc.ServerStream) error {
	shelf := get(in, "shelf").String()
	if shelf == "fail-first" {
		return status.Error(codes.Unavailable, "shelf is closed")
	}
	n := get(in, "page_size").Int()
	for i := int64(1); i <= n; i++ {
		if err := ss.SendMsg(l.book(m.Output(), shelf, i, fmt.Sprintf("book-%d", i))); err != nil {
			return err
		}
	}
	if shelf == "fail" {
		return status.Error(codes.Unavailable, "shelf went away")
	}
	return nil
}
