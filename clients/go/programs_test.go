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

// golden is the canonical dump of the shared wide table (docs/cross-language.md): what every
// client's cross-language tool prints for it, byte for byte.
const golden = "../../docs/xlang-wide.json"

func TestXlangDumpGolden(t *testing.T) {
	rec := testdata.XlangRecord(memory.DefaultAllocator)
	defer rec.Release()
	tbl := tableOf(rec)
	defer tbl.Release()
	got, err := testdata.Dump(tbl)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("dump differs from %s:\n%s", golden, got)
	}
}

// Go's own wide table (more types than the shared one) dumps too: every type has a canonical name.
func TestWideDumpCoversEveryType(t *testing.T) {
	rec := testdata.WideRecord(memory.DefaultAllocator)
	defer rec.Release()
	tbl := tableOf(rec)
	defer tbl.Release()
	got, err := testdata.Dump(tbl)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"time64[us]"`, `"type":"dictionary<string>"`, `"9223372036854775807"`, `"-3.2500000768e10"`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("dump lacks %s:\n%s", want, got)
		}
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

// cmd/xlang stores the shared wide table and dumps what the server returns: exactly the golden dump.
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
	if got, want := string(run("store", shared.addr, "go_xlang")), `{"name":"go_xlang","version":1,"rows":5}`+"\n"; got != want {
		t.Fatalf("xlang store printed %q, want %q", got, want)
	}
	got := run("dump", "-addr", shared.addr, "-name", "go_xlang") // the flag spelling works too
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("xlang dump differs from %s:\n%s", golden, got)
	}
	if fixture := run("fixture"); !bytes.Equal(fixture, want) {
		t.Fatalf("xlang fixture differs from %s:\n%s", golden, fixture)
	}
	var stderr bytes.Buffer
	missing := exec.Command(bin, "dump", shared.addr, "go_xlang_missing")
	missing.Stderr = &stderr
	if err := missing.Run(); err == nil || !bytes.Contains(stderr.Bytes(), []byte("NotFound")) {
		t.Fatalf("dumping a missing dataset: %v, stderr %q", err, stderr.Bytes())
	}
}
