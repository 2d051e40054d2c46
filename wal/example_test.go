package wal_test

import (
	"context"
	"fmt"
	"os"

	"github.com/switchyard/switchyard/wal"
)

func Example() {
	dir, _ := os.MkdirTemp("", "wal-example")
	defer os.RemoveAll(dir)
	l, err := wal.Open(dir, wal.Options{}) // batch fsync: group commit
	if err != nil {
		panic(err)
	}
	seq, _ := l.Append(context.Background(), []byte("hello")) // returns once fsynced
	r, _ := l.Read(seq)
	fmt.Println(seq, string(r.Payload))
	l.Close()
	// Output: 1 hello
}
