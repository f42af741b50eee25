package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/firstboot/firstboot/lab/labca"
	"github.com/firstboot/firstboot/lab/simnet"
)

func main() {
	ca, err := simnet.LoadOrCreateCA("/var/lib/firstboot/ca")
	if err != nil {
		panic(err)
	}
	t := time.Now()
	err = labca.IntoDisk(context.Background(), os.Args[1], os.Args[2], ca.CertPEM)
	fmt.Println(err, time.Since(t))
}
