"""The Shadowdesk application: settings, persistence, services, HTTP routes, jobs and the CLI."""
