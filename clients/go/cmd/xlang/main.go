// Command xlang is the Go side of the cross-language test (docs/cross-language.md): it stores the
// shared wide table, or loads a dataset and prints its canonical dump.
//
//	xlang store 127.0.0.1:50052 xlang_go [-token T]      (or -addr A -name N)
//	xlang dump  127.0.0.1:50052 xlang_python [-token T]
//	xlang copy  127.0.0.1:50052 SRC DST [-token T]       load SRC and store what was loaded as DST
//	xlang fixture                                        the shared table's dump, no server
//
// Exit status 1 on any error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	polarway "github.com/polarway/polarway/clients/go"
	"github.com/polarway/polarway/clients/go/internal/testdata"
)

func main() {
	usage := "usage: xlang store|dump HOST:PORT DATASET [-token T]  |  xlang copy HOST:PORT SRC DST [-token T]  |  xlang fixture"
	if len(os.Args) == 2 && os.Args[1] == "fixture" {
		if err := fixture(); err != nil {
			fmt.Fprintln(os.Stderr, "xlang:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || (os.Args[1] != "store" && os.Args[1] != "dump" && os.Args[1] != "copy") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50052", "server address")
	name := fs.String("name", "", "dataset name")
	token := fs.String("token", "", "bearer token")
	args := os.Args[2:]
	// Positional HOST:PORT DATASET (copy: SRC DST), as the other clients' tools take them.
	positional := 2
	if os.Args[1] == "copy" {
		positional = 3
	}
	var dst string
	if len(args) >= positional && !strings.HasPrefix(args[0], "-") && !strings.HasPrefix(args[1], "-") {
		*addr, *name = args[0], args[1]
		if positional == 3 {
			dst = args[2]
		}
		args = args[positional:]
	}
	fs.Parse(args)
	if *name == "" || fs.NArg() > 0 || (os.Args[1] == "copy" && dst == "") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err := run(os.Args[1], *addr, *name, dst, *token); err != nil {
		fmt.Fprintln(os.Stderr, "xlang:", err)
		os.Exit(1)
	}
}

func run(cmd, addr, name, dst, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var opts []polarway.Option
	if token != "" {
		opts = append(opts, polarway.WithAuthToken(token))
	}
	c, err := polarway.Dial(ctx, addr, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	if cmd == "store" {
		rec := testdata.XlangRecord(memory.DefaultAllocator)
		defer rec.Release()
		info, err := c.Store(ctx, name, rec)
		if err != nil {
			return err
		}
		fmt.Printf("{\"name\":%q,\"version\":%d,\"rows\":%d}\n", info.Name, info.Version, info.Rows)
		return nil
	}
	tbl, err := c.Load(ctx, name)
	if err != nil {
		return err
	}
	defer tbl.Release()
	if cmd == "copy" {
		info, err := c.Store(ctx, dst, tbl)
		if err != nil {
			return err
		}
		fmt.Printf("{\"name\":%q,\"version\":%d,\"rows\":%d}\n", info.Name, info.Version, info.Rows)
		return nil
	}
	out, err := testdata.Dump(tbl)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// fixture prints the dump of the shared table as built here, without a server.
func fixture() error {
	rec := testdata.XlangRecord(memory.DefaultAllocator)
	defer rec.Release()
	tbl := array.NewTableFromRecords(rec.Schema(), []arrow.RecordBatch{rec})
	defer tbl.Release()
	out, err := testdata.Dump(tbl)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
