// compose-check loads a compose file with compose-go, the loader `docker compose` itself
// uses, and prints the normalized project (all profiles, interpolated, defaults applied)
// as JSON on stdout. An invalid file exits 1 with the loader's message on stderr.
//
//	compose-check -f compose.yaml [-env-file .env.example] [-project-name bookify]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	file := flag.String("f", "compose.yaml", "compose file")
	envFile := flag.String("env-file", "", "env file for interpolation (default: none)")
	name := flag.String("project-name", "bookify", "project name")
	flag.Parse()

	if err := run(*file, *envFile, *name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(file, envFile, name string) error {
	workDir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return err
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithName(name),
		cli.WithWorkingDirectory(workDir),
		cli.WithProfiles([]string{"*"}),
		// Only the env file, never the caller's environment: the result must not depend on
		// whoever runs the check.
	}
	if envFile != "" {
		opts = append(opts, cli.WithEnvFiles(envFile), cli.WithDotEnv)
	}
	opts = append(opts, cli.WithResolvedPaths(false), cli.WithNormalization(true))
	options, err := cli.NewProjectOptions([]string{file}, opts...)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
