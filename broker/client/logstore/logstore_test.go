package logstore

import (
	"context"
	"errors"
	"testing"
)

func TestLogStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := 0
	fn := func(context.Context) error { calls++; return nil }
	if ran, err := s.Process(ctx, "a", fn); !ran || err != nil {
		t.Fatal(ran, err)
	}
	if ran, _ := s.Process(ctx, "a", fn); ran {
		t.Fatal("processed twice")
	}
	if ran, err := s.Process(ctx, "b", func(context.Context) error { return errors.New("boom") }); ran || err == nil {
		t.Fatal("failed fn recorded")
	}
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ran, _ := s.Process(ctx, "a", fn); ran || calls != 1 {
		t.Fatal("processed again after reopen")
	}
	if ran, _ := s.Process(ctx, "b", fn); !ran {
		t.Fatal("failed id was recorded")
	}
}
