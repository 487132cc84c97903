package polarway

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestFirstTable(t *testing.T) {
	for sql, want := range map[string]string{
		"SELECT * FROM trades":                                      "trades",
		"select a\nfrom   trades_2026.v1 where x = 1":               "trades_2026.v1",
		`SELECT * FROM "odd-name" t`:                                "odd-name",
		"SELECT * FROM trades, quotes":                              "trades",
		"SELECT * FROM parquet_scan('/data/cold/trades_*.parquet')": "",
		"SELECT * FROM range(10)":                                   "",
		"SELECT 1":                                                  "",
		"SELECT * FROM (SELECT 1)":                                  "",
	} {
		if got := firstTable(sql); got != want {
			t.Errorf("firstTable(%q) = %q, want %q", sql, got, want)
		}
	}
}

// The chunk writer sends chunks of exactly ChunkBytes (the last one shorter) whose concatenation
// is what was written, however the writes are cut.
func TestChunkWriter(t *testing.T) {
	data := make([]byte, 3*ChunkBytes+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var chunks [][]byte
	w := &chunkWriter{send: func(b []byte) error { chunks = append(chunks, b); return nil }}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+rand.IntN(2*ChunkBytes/3))
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 4 {
		t.Fatalf("%d chunks", len(chunks))
	}
	for i, c := range chunks[:3] {
		if len(c) != ChunkBytes {
			t.Fatalf("chunk %d has %d bytes", i, len(c))
		}
	}
	if !bytes.Equal(bytes.Join(chunks, nil), data) {
		t.Fatal("chunks do not concatenate to the input")
	}
}
