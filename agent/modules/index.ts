// Every state module brine knows, by the name states use (`file`, `pkg`…).
import type { Registry } from '../compile.js';
import { cmdModule } from './cmd.js';
import { cronModule } from './cron.js';
import { envModule } from './env.js';
import { fileModule } from './file.js';
import { gitModule } from './git.js';
import { groupModule } from './group.js';
import { nginxModule } from './nginx.js';
import { pkgModule } from './pkg.js';
import { postgresDatabaseModule } from './postgres_database.js';
import { postgresUserModule } from './postgres_user.js';
import { releaseModule } from './release.js';
import { serviceModule } from './service.js';
import { sshAuthModule } from './ssh_auth.js';
import { supervisorModule } from './supervisor.js';
import { userModule } from './user.js';
import type { StateModule } from './types.js';

export const modules: StateModule[] = [fileModule, userModule, groupModule, sshAuthModule, pkgModule, serviceModule, cmdModule, cronModule, postgresUserModule, postgresDatabaseModule, nginxModule, supervisorModule, envModule, gitModule, releaseModule];

export const registry: Registry = Object.fromEntries(modules.map((m) => [m.name, m.functions]));
