package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// Config is the effective configuration. Viper fills it here, in cmd only;
// packages below receive the parts they need as plain structs.
type Config struct {
	// LibvirtURI selects an existing libvirtd; empty means firstboot starts its own.
	LibvirtURI string `mapstructure:"libvirt-uri" yaml:"libvirt-uri"`
	// RunsDir is where run directories are created.
	RunsDir string `mapstructure:"runs-dir" yaml:"runs-dir"`
	// ImageCache holds built and downloaded images.
	ImageCache string `mapstructure:"image-cache" yaml:"image-cache"`
	// StateDir holds the lab's daemons' state and pid files.
	StateDir string `mapstructure:"state-dir" yaml:"state-dir"`
	// Accel is "auto", "kvm" or "tcg".
	Accel string `mapstructure:"accel" yaml:"accel"`
	// FirstParty lists the vendor's domains (apple.com, …) for first/third-party labels.
	FirstParty []string `mapstructure:"first-party" yaml:"first-party"`
	// LogLevel is "debug", "info", "warn" or "error".
	LogLevel string `mapstructure:"log-level" yaml:"log-level"`
	// Bridge is this host's bridge with a wired uplink, for bridged runs.
	Bridge string `mapstructure:"bridge" yaml:"bridge,omitempty"`
	// Egress is the interface routed runs leave by; empty means the default
	// route's.
	Egress string `mapstructure:"egress" yaml:"egress,omitempty"`
}

func defaultConfig() Config {
	return Config{
		RunsDir:    "runs",
		ImageCache: defaultCacheDir(),
		StateDir:   "/var/lib/firstboot",
		Accel:      "auto",
		LogLevel:   "info",
	}
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return d + "/firstboot/images"
	}
	return ".firstboot/images"
}

// loadConfig resolves flag > env (FIRSTBOOT_*) > file (firstboot.yaml) > default.
func loadConfig(flags *pflag.FlagSet, file string) (Config, error) {
	v := viper.New()
	def := defaultConfig()
	v.SetDefault("libvirt-uri", def.LibvirtURI)
	v.SetDefault("runs-dir", def.RunsDir)
	v.SetDefault("image-cache", def.ImageCache)
	v.SetDefault("state-dir", def.StateDir)
	v.SetDefault("accel", def.Accel)
	v.SetDefault("first-party", def.FirstParty)
	v.SetDefault("log-level", def.LogLevel)
	v.SetDefault("bridge", def.Bridge)
	v.SetDefault("egress", def.Egress)

	v.SetEnvPrefix("FIRSTBOOT")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()

	if file == "" {
		file = findConfigFile()
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return Config{}, usageError{fmt.Errorf("reading config file %s: %w", file, err)}
		}
	}
	// Only flags the user set override; a flag's own default must not beat env or file.
	var bindErr error
	flags.VisitAll(func(f *pflag.Flag) {
		if v.IsSet(f.Name) || isConfigKey(f.Name) {
			if err := v.BindPFlag(f.Name, f); err != nil && bindErr == nil {
				bindErr = err
			}
		}
	})
	if bindErr != nil {
		return Config{}, bindErr
	}
	var cfg Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return Config{}, usageError{fmt.Errorf("config %s: %w", v.ConfigFileUsed(), err)}
	}
	switch cfg.Accel {
	case "auto", "kvm", "tcg":
	default:
		return Config{}, usageError{fmt.Errorf("config: accel %q: want auto, kvm or tcg", cfg.Accel)}
	}
	return cfg, nil
}

// findConfigFile returns ./firstboot.yaml, else ~/.config/firstboot/firstboot.yaml,
// else "". Only these exact names: viper's own search would also take a file
// called plain "firstboot" (such as the binary itself) for a config file.
func findConfigFile() string {
	candidates := []string{"firstboot.yaml"}
	if dir, err := os.UserConfigDir(); err == nil {
		candidates = append(candidates, dir+"/firstboot/firstboot.yaml")
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		}
	}
	return ""
}

func isConfigKey(name string) bool {
	switch name {
	case "libvirt-uri", "runs-dir", "image-cache", "state-dir", "accel", "first-party", "log-level", "bridge", "egress":
		return true
	}
	return false
}

func newConfigCmd(app *app) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show the effective configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (flag > FIRSTBOOT_* env > firstboot.yaml > default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := yaml.Marshal(app.cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	return cmd
}
