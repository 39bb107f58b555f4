package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// printSummaries prints the summary.md of every run that wrote one, and where the files are.
func printSummaries(runs []ran) {
	var kept []string
	for _, r := range runs {
		path := filepath.Join(r.dir, "summary.md")
		summary, err := os.ReadFile(path)
		if err != nil {
			continue // the run never got as far as writing it; its error says why
		}
		fmt.Printf("\ndemo: %s, %s:\n\n%s", r.name, relative(path), summary)
		kept = append(kept, relative(r.dir))
	}
	if n := len(kept); n > 0 {
		list := kept[n-1]
		if n > 1 {
			list = strings.Join(kept[:n-1], ", ") + " and " + list
		}
		fmt.Printf("\ndemo: the result files of each rollout (result.json, summary.md, outputs.env, junit.xml) are kept in %s\n", list)
	}
}

// relative is path relative to the working directory when it is below it, else path.
func relative(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return path
}

// outcome reads how a run ended, MESHROLL_RESULT and MESHROLL_FAILED_CHECK, from the
// outputs.env it wrote in dir (KEY=VALUE lines, as a later CI job reads them).
func outcome(dir string) (result, check string) {
	f, err := os.Open(filepath.Join(dir, "outputs.env"))
	if err != nil {
		return "", ""
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		switch k, v, _ := strings.Cut(s.Text(), "="); k {
		case "MESHROLL_RESULT":
			result = v
		case "MESHROLL_FAILED_CHECK":
			check = v
		}
	}
	return result, check
}

// describe says how a run ended, for the headline.
func describe(result, check string) string {
	switch result {
	case "":
		return "ended without a result"
	case "canary-failed":
		return "rolled back by check " + check
	}
	return result
}
