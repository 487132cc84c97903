package polarway_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/polarway/polarway/clients/go/internal/testdata"
)

// golden is the canonical dump of the wide table, the reference the other clients' dumps of a
// Go-stored dataset must equal (regenerate with UPDATE_GOLDEN=1 after changing the table).
const golden = "internal/testdata/wide.json"

func TestWideDumpGolden(t *testing.T) {
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()
	tbl := tableOf(rec)
	defer tbl.Release()
	got, err := testdata.Dump(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(got, '\n'), want) {
		t.Fatalf("dump differs from %s:\n%s", golden, got)
	}
}

// build compiles one of the module's programs into a temp dir.
func build(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// The README's quickstart runs as written against a server.
func TestQuickstartExample(t *testing.T) {
	s := newServer(t) // its own server: the example stores version 1 of its dataset
	out, err := exec.CommandContext(ctxFor(t, time.Minute), build(t, "./examples/quickstart"), "-addr", s.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	want := "stored trades_20260203: version 1, 4 rows\nloaded 4 rows, 2 columns\nBTC 51000.0\nETH 3000.0\nSOL 100.0\n"
	if string(out) != want {
		t.Fatalf("quickstart printed\n%s\nwant\n%s", out, want)
	}
}

// cmd/xlang stores the wide table and dumps what the server returns: exactly the golden dump.
func TestXlangHelper(t *testing.T) {
	bin := build(t, "./cmd/xlang")
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctxFor(t, time.Minute), bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xlang %v: %v\n%s", args, err, stderr.Bytes())
		}
		return out
	}
	run("store", "-addr", shared.addr, "-name", "go_xlang")
	got := run("dump", "-addr", shared.addr, "-name", "go_xlang")
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("xlang dump differs from %s:\n%s", golden, got)
	}
	if err := exec.Command(bin, "dump", "-addr", shared.addr, "-name", "go_xlang_missing").Run(); err == nil {
		t.Fatal("dumping a missing dataset succeeded")
	}
}
