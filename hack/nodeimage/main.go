// The one binary of the real node's local images (hack/install-node.sh): no registry is
// reachable, so the pod sandbox's pause image and the smoke tests' client and server are
// built from this file.
//
//	pause                   (no arguments) block until SIGTERM/SIGINT, reaping orphans
//	serve PORT TEXT         answer every HTTP request with TEXT and the pod's hostname
//	fetch URL               GET URL (a refused connection is retried for 10 s), print the body, exit non-zero on failure
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func pause() {
	// As the sandbox's PID 1 it inherits orphans of the pod's other processes.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGCHLD)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	reap := time.NewTicker(time.Second)
	for {
		select {
		case <-stop:
			return
		case <-reap.C:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}

func serve(port, text string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", text, host)
	})
	fmt.Printf("serving on :%s\n", port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func fetch(url string) {
	client := http.Client{Timeout: 10 * time.Second}
	// A Service's rules reach kube-proxy a moment after its endpoint turns ready: a refused
	// connection is retried for a few seconds, as `curl --retry-connrefused` would.
	resp, err := client.Get(url)
	for try := 0; err != nil && errors.Is(err, syscall.ECONNREFUSED) && try < 20; try++ {
		time.Sleep(500 * time.Millisecond)
		resp, err = client.Get(url)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	if resp.StatusCode != http.StatusOK {
		os.Exit(1)
	}
}

func main() {
	switch {
	case len(os.Args) == 1:
		pause()
	case os.Args[1] == "serve" && len(os.Args) == 4:
		serve(os.Args[2], os.Args[3])
	case os.Args[1] == "fetch" && len(os.Args) == 3:
		fetch(os.Args[2])
	default:
		fmt.Fprintln(os.Stderr, "usage: tiny | tiny serve PORT TEXT | tiny fetch URL")
		os.Exit(2)
	}
}
