# make demo  - run the simulated charger with a scripted session you can watch
# make test  - run the whole test suite
# make lint  - ruff and mypy
# The first call creates .venv and installs the project with its dev tools.
#
# sudo make install    - install as a system service on Raspberry Pi OS / Debian
# sudo make uninstall  - remove it again (keeps /etc/evse and /var/lib/evse)
# DESTDIR=/some/root   - install into (or remove from) a throw-away root instead

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint check clean install install-deps uninstall

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "python3-venv is missing: installing it with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m hil.demo

# Most tests wait on a daemon subprocess, so 4 workers pay off even on 2 cores.
TEST_WORKERS ?= 4

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) config/var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# -- system service -----------------------------------------------------------------------
DESTDIR ?=
OPT := /opt/evse
UNIT := $(DESTDIR)/etc/systemd/system/evse.service
SYSUSERS := $(DESTDIR)/usr/lib/sysusers.d/evse.conf
UDEV := $(DESTDIR)/etc/udev/rules.d/90-evse-pwm.rules
CONF := $(DESTDIR)/etc/evse
ROOT := $(if $(DESTDIR),--root=$(DESTDIR),)

# What building the Pi extras (systemd-python) needs on a fresh Raspberry Pi OS.
install-deps:
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq python3-venv python3-dev gcc pkg-config libsystemd-dev
	@# gpiozero's GPIO backend on Bookworm; the venv sees it through system site packages
	$(SUDO) apt-get install -y -qq python3-lgpio || echo "python3-lgpio not available: GPIO drivers need it on a Pi"

install:
	$(PYTHON) -m venv --system-site-packages $(DESTDIR)$(OPT)
	$(DESTDIR)$(OPT)/bin/python -m pip install -q --upgrade pip
	$(DESTDIR)$(OPT)/bin/python -m pip install -q '.[pi]'
	@# pip builds in the checkout: leave no root-owned build files behind
	rm -rf build evse_pi.egg-info
	@# a venv staged under DESTDIR must name its final place
	$(if $(DESTDIR),grep -rlI '$(DESTDIR)$(OPT)' $(DESTDIR)$(OPT)/bin $(DESTDIR)$(OPT)/pyvenv.cfg \
	  | xargs -r sed -i 's|$(DESTDIR)$(OPT)|$(OPT)|g',)
	install -m 0644 README.md $(DESTDIR)$(OPT)/README.md
	install -d -m 0755 $(DESTDIR)$(OPT)/docs
	install -m 0644 docs/*.md $(DESTDIR)$(OPT)/docs/
	install -d -m 0755 $(DESTDIR)/etc
	install -D -m 0644 systemd/evse.sysusers $(SYSUSERS)
	systemd-sysusers $(ROOT) $(SYSUSERS)
	install -D -m 0644 systemd/evse.service $(UNIT)
	install -D -m 0644 systemd/evse-pwm.rules $(UDEV)
	install -D -m 0755 systemd/install-firmware $(DESTDIR)/usr/lib/evse/install-firmware
	install -d -m 0750 $(CONF)
	[ -e $(CONF)/evse.toml ] || install -m 0640 config/evse.pi.toml $(CONF)/evse.toml
	chgrp $$(awk -F: '$$1 == "evse" { print $$3 }' $(DESTDIR)/etc/group) $(CONF) $(CONF)/evse.toml
	systemctl $(ROOT) enable evse.service
	$(if $(DESTDIR),,udevadm control --reload && udevadm trigger --subsystem-match=pwm)
	@# an update restarts a running service (ending its sessions); a first install waits for the config
	$(if $(DESTDIR),,systemctl daemon-reload && systemctl try-restart evse.service)
	@echo "installed; edit /etc/evse/evse.toml, check it with"
	@echo "  sudo -u evse $(OPT)/bin/evse config check /etc/evse/evse.toml && sudo -u evse $(OPT)/bin/evse doctor --config /etc/evse/evse.toml"
	@echo "then: sudo systemctl start evse; journalctl -u evse -f"

uninstall:
	-systemctl $(ROOT) disable $(if $(DESTDIR),,--now) evse.service
	rm -f $(UNIT) $(UDEV) $(SYSUSERS)
	rm -rf $(DESTDIR)/usr/lib/evse
	rm -rf $(DESTDIR)$(OPT)
	$(if $(DESTDIR),,systemctl daemon-reload && udevadm control --reload)
	@echo "kept $(CONF) (configuration) and $(DESTDIR)/var/lib/evse (transactions); the evse user stays"
