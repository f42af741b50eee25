package scenarios

import (
	"fmt"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Action is one thing done inside a step. Exactly one of the parameter fields
// matching Kind is set.
type Action struct {
	Kind string // the action's key in the file
	Line int    // where it was written, for error messages and the plan
	Col  int

	Wait          Duration       // wait
	Shutdown      *ShutdownArgs  // shutdown
	Media         *MediaArgs     // insert, eject
	WaitIdle      *WaitIdleArgs  // wait_idle
	WaitTraffic   *TrafficArgs   // wait_traffic
	Keys          *KeysArgs      // keys, type
	Screenshot    string         // screenshot
	WaitScreen    *ScreenArgs    // wait_screen
	ConsoleExpect *ExpectArgs    // console_expect
	ConsoleSend   *SendArgs      // console_send
	GuestExec     *GuestExecArgs // guest_exec
	Mark          string         // mark
	Pause         *PauseArgs     // pause
	WaitText      *TextArgs      // wait_text
	ClickText     *ClickTextArgs // click_text
	Point         *PointArgs     // click, double_click, move
	Drag          *DragArgs      // drag
	Scroll        *ScrollArgs    // scroll
}

// ShutdownArgs: ACPI power-off, then forced after Timeout.
type ShutdownArgs struct {
	Timeout Duration `yaml:"timeout" short:"true"`
}

// MediaArgs names a media entry of the image section.
type MediaArgs struct {
	Name string `yaml:"name" short:"true" required:"true"`
}

// WaitIdleArgs waits until no new connection has started for Quiet, at most Max.
type WaitIdleArgs struct {
	Quiet Duration `yaml:"quiet" short:"true" required:"true"`
	Max   Duration `yaml:"max"`
}

// TrafficArgs waits until the machine sends traffic matching every given
// pattern kind (shell-style patterns: *.apple.com).
type TrafficArgs struct {
	DNS     string   `yaml:"dns" doc:"a DNS query name pattern"`
	SNI     string   `yaml:"sni" doc:"a TLS server name pattern"`
	Host    string   `yaml:"host" doc:"an HTTP Host pattern"`
	Dst     string   `yaml:"dst" doc:"a destination ip:port pattern"`
	Timeout Duration `yaml:"timeout" required:"true"`
}

// KeysArgs types keys: Packer boot_command syntax for keys, plain text for type.
type KeysArgs struct {
	Text     string   `yaml:"text" short:"true" required:"true"`
	Interval Duration `yaml:"interval" doc:"pause between key presses (default 100ms)"`

	// Parsed is the key sequence, resolved at load time so typos fail early.
	Parsed []KeyEvent `yaml:"-"`
}

// ScreenArgs waits until a region of the screen matches a reference image.
type ScreenArgs struct {
	Reference string   `yaml:"reference" short:"true" required:"true" doc:"PNG, relative to the scenario file"`
	Region    []int    `yaml:"region" doc:"x, y, width, height; the whole screen when absent"`
	Tolerance float64  `yaml:"tolerance" doc:"fraction of pixels allowed to differ (default 0.02)"`
	Timeout   Duration `yaml:"timeout"`
}

// TextArgs waits until OCR of the screen finds a regular expression.
type TextArgs struct {
	Text    string   `yaml:"text" short:"true" required:"true" doc:"a regular expression, matched line by line"`
	Region  []int    `yaml:"region" doc:"x, y, width, height; the whole screen when absent"`
	Timeout Duration `yaml:"timeout"`

	Regexp *regexp.Regexp `yaml:"-"`
}

// ClickTextArgs clicks the centre of the text's box once OCR finds it.
type ClickTextArgs struct {
	Text    string   `yaml:"text" short:"true" required:"true" doc:"a regular expression, matched line by line"`
	Index   int      `yaml:"index" doc:"which match, in reading order, when several (0 is the first; -1 the last)"`
	Button  string   `yaml:"button" enum:",left,middle,right"`
	Double  bool     `yaml:"double" doc:"double click"`
	Region  []int    `yaml:"region" doc:"x, y, width, height; the whole screen when absent"`
	Timeout Duration `yaml:"timeout"`

	Regexp *regexp.Regexp `yaml:"-"`
}

// PointArgs is a screen position: [x, y] or {x: 10, y: 20, button: left}.
type PointArgs struct {
	X      int    `yaml:"x" required:"true"`
	Y      int    `yaml:"y" required:"true"`
	Button string `yaml:"button" enum:",left,middle,right"`
}

// DragArgs presses a button at From, moves to To and releases it.
type DragArgs struct {
	From   []int  `yaml:"from" required:"true" doc:"[x, y]"`
	To     []int  `yaml:"to" required:"true" doc:"[x, y]"`
	Button string `yaml:"button" enum:",left,middle,right"`
}

// ScrollArgs turns the mouse wheel with the pointer at X, Y.
type ScrollArgs struct {
	X  int `yaml:"x" required:"true"`
	Y  int `yaml:"y" required:"true"`
	DX int `yaml:"dx" doc:"wheel steps to the right (negative: left)"`
	DY int `yaml:"dy" doc:"wheel steps down (negative: up)"`
}

// ExpectArgs waits for a regular expression on the serial console.
type ExpectArgs struct {
	Pattern string   `yaml:"pattern" short:"true" required:"true"`
	Timeout Duration `yaml:"timeout"`

	Regexp *regexp.Regexp `yaml:"-"`
}

// SendArgs writes to the serial console.
type SendArgs struct {
	Text    string `yaml:"text" short:"true" required:"true"`
	NoEnter bool   `yaml:"no_enter" doc:"do not append a newline"`
}

// GuestExecArgs runs a program through qemu-guest-agent.
type GuestExecArgs struct {
	Path    string   `yaml:"path" short:"true" required:"true"`
	Args    []string `yaml:"args"`
	Timeout Duration `yaml:"timeout"`
}

// PauseArgs waits for the person at the keyboard (Enter in the terminal, or
// firstboot continue RUN from another shell).
type PauseArgs struct {
	Message string `yaml:"message" short:"true" required:"true" doc:"what the person should do before continuing"`
}

// actionSpec says how an action's value is written.
type actionSpec struct {
	// field is the Action field holding the parameters ("" for none).
	field string
	// noValue: the action takes no parameters (`- start`).
	noValue bool
	doc     string
}

var actionSpecs = map[string]actionSpec{
	"start":          {noValue: true, doc: "power the machine on"},
	"reboot":         {noValue: true, doc: "ACPI reboot"},
	"reset":          {noValue: true, doc: "hard reset"},
	"shutdown":       {field: "Shutdown", doc: "ACPI power-off, forced after timeout"},
	"insert":         {field: "Media", doc: "insert a media entry"},
	"eject":          {field: "Media", doc: "eject a media entry"},
	"wait":           {field: "Wait", doc: "wait a duration"},
	"wait_idle":      {field: "WaitIdle", doc: "wait until no new connection for a while"},
	"wait_traffic":   {field: "WaitTraffic", doc: "wait until matching traffic is seen"},
	"keys":           {field: "Keys", doc: "press keys (Packer boot_command syntax)"},
	"type":           {field: "Keys", doc: "type plain text"},
	"screenshot":     {field: "Screenshot", doc: "save a PNG of the screen"},
	"wait_screen":    {field: "WaitScreen", doc: "wait until the screen matches a reference"},
	"console_expect": {field: "ConsoleExpect", doc: "wait for a pattern on the serial console"},
	"console_send":   {field: "ConsoleSend", doc: "write a line to the serial console"},
	"guest_exec":     {field: "GuestExec", doc: "run a program through qemu-guest-agent"},
	"mark":           {field: "Mark", doc: "annotate this instant"},
	"pause":          {field: "Pause", doc: "wait for the person: Enter in the terminal, or firstboot continue RUN"},
	"wait_text":      {field: "WaitText", doc: "wait until the screen shows text (OCR)"},
	"click_text":     {field: "ClickText", doc: "click on text the screen shows (OCR)"},
	"click":          {field: "Point", doc: "click at x, y"},
	"double_click":   {field: "Point", doc: "double click at x, y"},
	"move":           {field: "Point", doc: "move the pointer to x, y"},
	"drag":           {field: "Drag", doc: "press at from, move to to, release"},
	"scroll":         {field: "Scroll", doc: "turn the mouse wheel at x, y"},
}

// usesScreen says whether the action reads the screen or points at it.
func (a *Action) usesScreen() bool {
	switch a.Kind {
	case "screenshot", "wait_screen", "wait_text", "click_text", "click", "double_click", "move", "drag", "scroll":
		return true
	}
	return false
}

// ActionNames lists the action keys, sorted.
func ActionNames() []string {
	var out []string
	for k := range actionSpecs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (a *Action) decodeNode(d *decoder, n *yaml.Node) {
	a.Line, a.Col = n.Line, n.Column
	var key, val *yaml.Node
	switch {
	case n.Kind == yaml.ScalarNode:
		key = n
	case n.Kind == yaml.MappingNode && len(n.Content) == 2:
		key, val = n.Content[0], n.Content[1]
	case n.Kind == yaml.MappingNode:
		d.fail(n, "an action is one key (like `wait: 5s`); this one has %d: put each action in its own list item", len(n.Content)/2)
		return
	default:
		d.fail(n, "expected an action (one of: %s), found %s", strings.Join(ActionNames(), ", "), describe(n))
		return
	}
	spec, ok := actionSpecs[key.Value]
	if !ok {
		d.fail(key, "unknown action %q%s (expected one of: %s)", key.Value, suggest(key.Value, ActionNames()), strings.Join(ActionNames(), ", "))
		return
	}
	a.Kind = key.Value
	if spec.noValue {
		if val != nil && !(val.Kind == yaml.ScalarNode && (val.Tag == "!!null" || val.Value == "")) {
			d.fail(val, "action %q takes no value", key.Value)
		}
		return
	}
	if val == nil {
		d.fail(key, "action %q needs a value", key.Value)
		return
	}
	f := reflect.ValueOf(a).Elem().FieldByName(spec.field)
	if f.Kind() == reflect.Pointer && val.Kind == yaml.ScalarNode {
		// Shorthand: `console_expect: "login:"` sets the field tagged short.
		p := reflect.New(f.Type().Elem())
		if !d.decodeShort(val, p.Elem(), key.Value) {
			return
		}
		f.Set(p)
	} else {
		d.decode(val, f, key.Value)
	}
	a.resolve(d, val)
}

// decodeShort decodes a scalar into the field tagged short:"true".
func (d *decoder) decodeShort(n *yaml.Node, v reflect.Value, what string) bool {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("short") == "true" {
			d.decode(n, v.Field(i), what)
			return true
		}
	}
	d.fail(n, "action %q needs a mapping of keys", what)
	return false
}

// resolve checks and pre-parses what can be checked before a run.
func (a *Action) resolve(d *decoder, n *yaml.Node) {
	switch a.Kind {
	case "keys":
		events, err := ParseKeys(a.Keys.Text)
		if err != nil {
			d.fail(n, "keys: %v", err)
		}
		a.Keys.Parsed = events
	case "type":
		for i, r := range a.Keys.Text {
			if _, ok := charKey(r); !ok {
				d.fail(n, "type: character %d (%q) has no key on a US keyboard; use keys with <…> names for special keys", i+1, r)
			}
		}
		a.Keys.Parsed = TypeText(a.Keys.Text)
	case "console_expect":
		re, err := regexp.Compile(a.ConsoleExpect.Pattern)
		if err != nil {
			d.fail(n, "console_expect: %q is not a regular expression: %v", a.ConsoleExpect.Pattern, err)
		}
		a.ConsoleExpect.Regexp = re
	case "wait_traffic":
		t := a.WaitTraffic
		if t.DNS == "" && t.SNI == "" && t.Host == "" && t.Dst == "" {
			d.fail(n, "wait_traffic: give at least one of dns, sni, host, dst")
		}
		for _, p := range []string{t.DNS, t.SNI, t.Host, t.Dst} {
			if _, err := path.Match(p, ""); err != nil {
				d.fail(n, "wait_traffic: bad pattern %q: %v", p, err)
			}
		}
	case "wait_screen":
		if r := a.WaitScreen.Region; r != nil && len(r) != 4 {
			d.fail(n, "wait_screen: region is x, y, width, height (4 numbers), found %d", len(r))
		}
		if tol := a.WaitScreen.Tolerance; tol < 0 || tol > 1 {
			d.fail(n, "wait_screen: tolerance %v must be between 0 and 1", tol)
		}
	case "wait_text":
		a.WaitText.Regexp = compileText(d, n, a.Kind, a.WaitText.Text)
		checkRegion(d, n, a.Kind, a.WaitText.Region)
	case "click_text":
		a.ClickText.Regexp = compileText(d, n, a.Kind, a.ClickText.Text)
		checkRegion(d, n, a.Kind, a.ClickText.Region)
		if a.ClickText.Index < -1 {
			d.fail(n, "click_text: index %d: 0 is the first match in reading order, -1 the last", a.ClickText.Index)
		}
	case "click", "double_click", "move":
		p := a.Point
		if p.X < 0 || p.Y < 0 {
			d.fail(n, "%s: %d, %d is off the screen (0, 0 is the top left corner)", a.Kind, p.X, p.Y)
		}
		if a.Kind == "move" && p.Button != "" {
			d.fail(n, "move: takes no button (use drag to move with a button held)")
		}
	case "drag":
		for _, p := range [][]int{a.Drag.From, a.Drag.To} {
			if len(p) != 2 || p[0] < 0 || p[1] < 0 {
				d.fail(n, "drag: from and to are [x, y] screen positions, found %v", p)
			}
		}
	case "scroll":
		if a.Scroll.X < 0 || a.Scroll.Y < 0 {
			d.fail(n, "scroll: %d, %d is off the screen", a.Scroll.X, a.Scroll.Y)
		}
		if a.Scroll.DX == 0 && a.Scroll.DY == 0 {
			d.fail(n, "scroll: give dy (and/or dx): how many wheel steps, negative for up or left")
		}
	case "screenshot", "mark":
		name := a.Screenshot + a.Mark
		if name == "" || strings.ContainsAny(name, "/\\") {
			d.fail(n, "%s: needs a name without slashes", a.Kind)
		}
	case "pause":
		if strings.TrimSpace(a.Pause.Message) == "" {
			d.fail(n, "pause: say what the person should do (pause: \"log in, then press Enter\")")
		}
	case "wait":
		if a.Wait <= 0 {
			d.fail(n, "wait: needs a positive duration")
		}
	}
}

func compileText(d *decoder, n *yaml.Node, kind, pattern string) *regexp.Regexp {
	re, err := regexp.Compile(pattern)
	if err != nil {
		d.fail(n, "%s: %q is not a regular expression: %v", kind, pattern, err)
	}
	return re
}

func checkRegion(d *decoder, n *yaml.Node, kind string, r []int) {
	if r == nil {
		return
	}
	if len(r) != 4 {
		d.fail(n, "%s: region is x, y, width, height (4 numbers), found %d", kind, len(r))
		return
	}
	if r[0] < 0 || r[1] < 0 || r[2] <= 0 || r[3] <= 0 {
		d.fail(n, "%s: region %v: x and y must not be negative, width and height must be positive", kind, r)
	}
}

// decodeNode reads a position written as [x, y] or as a mapping.
func (p *PointArgs) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		d.decodeStruct(n, reflect.ValueOf(p).Elem(), "position")
		return
	}
	var xy []int
	d.decode(n, reflect.ValueOf(&xy).Elem(), "position")
	if len(xy) != 2 {
		d.fail(n, "a position is [x, y] (2 numbers), found %d", len(xy))
		return
	}
	p.X, p.Y = xy[0], xy[1]
}

// Timeout returns the action's own time limit, or def when it has none.
func (a *Action) Timeout(def time.Duration) time.Duration {
	var t Duration
	switch {
	case a.Shutdown != nil:
		t = a.Shutdown.Timeout
	case a.WaitIdle != nil:
		t = a.WaitIdle.Max
	case a.WaitTraffic != nil:
		t = a.WaitTraffic.Timeout
	case a.WaitScreen != nil:
		t = a.WaitScreen.Timeout
	case a.ConsoleExpect != nil:
		t = a.ConsoleExpect.Timeout
	case a.GuestExec != nil:
		t = a.GuestExec.Timeout
	case a.WaitText != nil:
		t = a.WaitText.Timeout
	case a.ClickText != nil:
		t = a.ClickText.Timeout
	}
	if t > 0 {
		return t.D()
	}
	return def
}

// Describe is the action as the plan prints it.
func (a *Action) Describe() string {
	switch a.Kind {
	case "wait":
		return "wait " + a.Wait.String()
	case "shutdown":
		if a.Shutdown != nil && a.Shutdown.Timeout > 0 {
			return "shutdown (ACPI, forced after " + a.Shutdown.Timeout.String() + ")"
		}
		return "shutdown (ACPI, forced after 2m0s)"
	case "insert", "eject":
		return a.Kind + " " + a.Media.Name
	case "wait_idle":
		return fmt.Sprintf("wait until no new connection for %s (at most %s)", a.WaitIdle.Quiet, a.Timeout(10*time.Minute))
	case "wait_traffic":
		var parts []string
		t := a.WaitTraffic
		for _, kv := range [][2]string{{"dns", t.DNS}, {"sni", t.SNI}, {"host", t.Host}, {"dst", t.Dst}} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+"="+kv[1])
			}
		}
		return fmt.Sprintf("wait for traffic %s (timeout %s)", strings.Join(parts, " "), t.Timeout)
	case "keys", "type":
		return fmt.Sprintf("%s %q (%d key events)", a.Kind, a.Keys.Text, len(a.Keys.Parsed))
	case "screenshot":
		return "screenshot " + a.Screenshot
	case "wait_screen":
		return fmt.Sprintf("wait until the screen matches %s (timeout %s)", a.WaitScreen.Reference, a.Timeout(10*time.Minute))
	case "console_expect":
		return fmt.Sprintf("wait for console /%s/ (timeout %s)", a.ConsoleExpect.Pattern, a.Timeout(5*time.Minute))
	case "console_send":
		return fmt.Sprintf("console send %q", a.ConsoleSend.Text)
	case "guest_exec":
		words := []string{a.GuestExec.Path}
		for _, arg := range a.GuestExec.Args {
			words = append(words, shellQuote(arg))
		}
		return "guest exec " + strings.Join(words, " ")
	case "mark":
		return "mark " + a.Mark
	case "pause":
		return fmt.Sprintf("pause %q (until Enter in the terminal or firstboot continue)", a.Pause.Message)
	case "wait_text":
		return fmt.Sprintf("wait until the screen shows /%s/%s (timeout %s)", a.WaitText.Text, regionText(a.WaitText.Region), a.Timeout(DefaultActionTimeout))
	case "click_text":
		c := a.ClickText
		what := "click"
		if c.Double {
			what = "double click"
		}
		if c.Button != "" && c.Button != "left" {
			what = c.Button + " " + what
		}
		which := ""
		if c.Index != 0 {
			which = fmt.Sprintf(" (match %d)", c.Index)
		}
		return fmt.Sprintf("%s on /%s/%s%s (timeout %s)", what, c.Text, which, regionText(c.Region), a.Timeout(DefaultClickTextTimeout))
	case "click", "double_click", "move":
		what := strings.ReplaceAll(a.Kind, "_", " ")
		if b := a.Point.Button; b != "" && b != "left" {
			what = b + " " + what
		}
		return fmt.Sprintf("%s at %d, %d", what, a.Point.X, a.Point.Y)
	case "drag":
		return fmt.Sprintf("drag from %d, %d to %d, %d", a.Drag.From[0], a.Drag.From[1], a.Drag.To[0], a.Drag.To[1])
	case "scroll":
		return fmt.Sprintf("scroll dx %d dy %d at %d, %d", a.Scroll.DX, a.Scroll.DY, a.Scroll.X, a.Scroll.Y)
	}
	return a.Kind
}

func regionText(r []int) string {
	if len(r) != 4 {
		return ""
	}
	return fmt.Sprintf(" in %d, %d, %dx%d", r[0], r[1], r[2], r[3])
}

// shellQuote writes an argument the way a shell would need it, so the plan
// shows where each argument begins and ends.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
