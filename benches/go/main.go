// The Go side of the benchmark: etcd's own clientv3 (Debian's golang-etcd-server-dev, built in
// GOPATH mode by scripts/bench) doing one case of the client-process comparison, then printing
// one JSON line: the median and p99 latency, the rate, and the client's CPU per operation.
//
//	etcd-config-bench-go ENDPOINT CASE N     (CASE: get, put, txn, concurrent)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func cpu() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		panic(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

func main() {
	endpoint, which := os.Args[1], os.Args[2]
	n, err := strconv.Atoi(os.Args[3])
	if err != nil {
		panic(err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()
	if _, err := client.Put(ctx, "/bench/one", "value"); err != nil {
		panic(err)
	}
	one := func(i int) {
		var err error
		switch which {
		case "get":
			_, err = client.Get(ctx, "/bench/one")
		case "put":
			_, err = client.Put(ctx, "/bench/put", strconv.Itoa(i))
		case "txn":
			ops := make([]clientv3.Op, 20)
			for k := range ops {
				ops[k] = clientv3.OpPut(fmt.Sprintf("/bench/txn/%d", k), strconv.Itoa(i))
			}
			_, err = client.Txn(ctx).Then(ops...).Commit()
		default:
			panic("unknown case " + which)
		}
		if err != nil {
			panic(err)
		}
	}
	if which == "concurrent" {
		const tasks, perTask = 64, 200
		round := func() {
			var wg sync.WaitGroup
			for t := 0; t < tasks; t++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perTask; i++ {
						if _, err := client.Get(ctx, "/bench/one"); err != nil {
							panic(err)
						}
					}
				}()
			}
			wg.Wait()
		}
		round() // warm-up
		start, cpuStart := time.Now(), cpu()
		for r := 0; r < n; r++ {
			round()
		}
		ops := float64(n * tasks * perTask)
		report(0, 0, ops/time.Since(start).Seconds(), float64((cpu()-cpuStart).Microseconds())/ops)
		return
	}
	for i := 0; i < n/10+5; i++ {
		one(i)
	}
	samples := make([]float64, n)
	cpuStart := cpu()
	for i := 0; i < n; i++ {
		t := time.Now()
		one(i)
		samples[i] = float64(time.Since(t).Microseconds())
	}
	spent := float64((cpu() - cpuStart).Microseconds()) / float64(n)
	sort.Float64s(samples)
	at := func(q float64) float64 { return samples[int(float64(len(samples)-1)*q+0.5)] }
	report(at(0.5), at(0.99), 0, spent)
}

func report(median, p99, rate, cpuPerOp float64) {
	line, _ := json.Marshal(map[string]float64{
		"median_us": median, "p99_us": p99, "ops_per_s": rate, "cpu_us_per_op": cpuPerOp,
	})
	fmt.Println(string(line))
}
