package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLoadModuleList(t *testing.T) {
	list := filepath.Join(t.TempDir(), "modules.devices")
	paths := []string{"/lib/modules/r/virtio_console.ko", "/lib/modules/r/broken.ko", "/lib/modules/r/floppy.ko", "/lib/modules/r/isofs.ko"}
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var order []string
	load := func(p string) error {
		order = append(order, p)
		switch filepath.Base(p) {
		case "floppy.ko":
			return unix.ENODEV // no controller: what finit_module says
		case "broken.ko":
			return unix.ENOEXEC
		}
		return nil
	}
	loaded, absent, err := loadModuleList(list, load)
	if !slices.Equal(order, paths) {
		t.Errorf("load order %v, want the list's %v", order, paths)
	}
	if !slices.Equal(loaded, []string{"virtio_console", "isofs"}) || !slices.Equal(absent, []string{"floppy"}) {
		t.Errorf("loaded %v absent %v", loaded, absent)
	}
	if !errors.Is(err, unix.ENOEXEC) || !strings.Contains(err.Error(), "loading broken") || strings.Contains(err.Error(), "floppy") {
		t.Errorf("error %v: want only broken's failure", err)
	}
	if _, _, err := loadModuleList(filepath.Join(t.TempDir(), "none"), load); err == nil || !strings.Contains(err.Error(), "module list") {
		t.Errorf("missing list: %v", err)
	}
}
