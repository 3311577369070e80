#!/usr/bin/env bash
# Install the Debian packages that the real-peer tests need, when they are missing.
# Browser tests use Debian's chromium (Playwright drives it; nothing is downloaded at run time).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# DICOM adapter tests: dcmtk (storescu, findscu, movescu, getscu, echoscu, storescp) and Orthanc
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
# OSCAR adapter tests: a throw-away MariaDB (mariadbd + mariadb-install-db)
command -v mariadb-install-db >/dev/null 2>&1 || need+=(mariadb-server)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: ${need[*]} (install them with apt-get; the tests needing them will be skipped)" >&2
  exit 0
fi
echo "Installing system packages: ${need[*]}"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
