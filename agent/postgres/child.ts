// Placeholder: the Postgres client child process (run as the postgres OS user).
export async function postgresChild(): Promise<number> {
  throw new Error('not implemented yet');
}
