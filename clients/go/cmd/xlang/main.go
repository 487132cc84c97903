// Command xlang is the Go side of the cross-language test: it stores the fixed wide-typed table,
// or loads a dataset and prints its canonical JSON dump (see clients/go/README.md).
//
//	go run ./cmd/xlang store -addr 127.0.0.1:50052 -name from_go
//	go run ./cmd/xlang dump  -addr 127.0.0.1:50052 -name from_python
//
// -token sets a bearer token. Exit status 1 on any error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	polarway "github.com/polarway/polarway/clients/go"
	"github.com/polarway/polarway/clients/go/internal/testdata"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "store" && os.Args[1] != "dump") {
		fmt.Fprintln(os.Stderr, "usage: xlang store|dump -addr HOST:PORT -name DATASET [-token T]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50052", "server address")
	name := fs.String("name", "", "dataset name")
	token := fs.String("token", "", "bearer token")
	fs.Parse(os.Args[2:])
	if err := run(os.Args[1], *addr, *name, *token); err != nil {
		fmt.Fprintln(os.Stderr, "xlang:", err)
		os.Exit(1)
	}
}

func run(cmd, addr, name, token string) error {
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
		rec := testdata.WideRecord(memory.DefaultAllocator)
		defer rec.Release()
		info, err := c.Store(ctx, name, rec)
		if err != nil {
			return err
		}
		fmt.Printf("stored %s version %d rows %d\n", info.Name, info.Version, info.Rows)
		return nil
	}
	tbl, err := c.Load(ctx, name)
	if err != nil {
		return err
	}
	defer tbl.Release()
	out, err := testdata.Dump(tbl)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
