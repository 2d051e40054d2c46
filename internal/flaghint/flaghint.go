// Package flaghint suggests the flag a mistyped one probably meant, for
// the "flag provided but not defined: -confg" error of package flag.
package flaghint

import (
	"flag"
	"strings"

	"github.com/switchyard/switchyard/config"
)

const notDefined = "flag provided but not defined: -"

// Annotate returns the flag package's output with " (did you mean
// --NAME?)" added to its "flag provided but not defined" line when err is
// that error and fs has a flag close to the unknown one; else out as is.
func Annotate(fs *flag.FlagSet, err error, out []byte) []byte {
	if err == nil || !strings.HasPrefix(err.Error(), notDefined) {
		return out
	}
	s := Suggest(fs, strings.TrimPrefix(err.Error(), notDefined))
	if s == "" {
		return out
	}
	line := err.Error()
	i := strings.Index(string(out), line)
	if i < 0 {
		return out
	}
	j := i + len(line)
	res := make([]byte, 0, len(out)+len(s)+20)
	res = append(res, out[:j]...)
	res = append(res, " (did you mean --"+s+"?)"...)
	return append(res, out[j:]...)
}

// Suggest returns the name of the flag of fs that name is probably a typo
// of: within an edit distance of 2 (or a third of its length), or a flag
// that name ends or starts with after a dash ("msg-id": "id"); else "".
func Suggest(fs *flag.FlagSet, name string) string {
	name = strings.TrimLeft(name, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	best, bestD := "", -1
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) < 2 {
			return
		}
		d := config.EditDistance(name, f.Name)
		if strings.HasSuffix(name, "-"+f.Name) || strings.HasPrefix(name, f.Name+"-") {
			d = min(d, 1)
		}
		if bestD < 0 || d < bestD {
			best, bestD = f.Name, d
		}
	})
	if bestD >= 0 && (bestD <= 2 || bestD <= len(name)/3) {
		return best
	}
	return ""
}

// Closest returns the one of names that s is probably a typo of, or ""
// (config.Closest).
func Closest(s string, names []string) string { return config.Closest(s, names) }
