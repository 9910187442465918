# An application behind lvs-sync: three instances of a web server,
# registered in Consul with an HTTP check, updated one at a time with no
# request lost through the VIP.
#
# What makes the rolling update lossless:
# - Nomad replaces one allocation at a time (max_parallel = 1): it stops an
#   old one, then places its replacement, so two of three serve throughout;
# - an old allocation is first deregistered from Consul, then its task keeps
#   running for shutdown_delay: lvs-sync takes it out of rotation (weight 0)
#   within ~100 ms of the deregistration and deletes it once its
#   connections end, so nothing is sent to it after it stops;
# - a new allocation registers with its check failing until it answers, so
#   lvs-sync adds it as a real server only once it passes, and the update
#   waits for its checks (health_check = "checks") before the next one.
#
# Port 80 is static: lvs-sync.hcl's "web" is a gate virtual service on :80
# (and "web6" an ipip one), and with gate and ipip the kernel cannot
# translate ports, so a real server gets the traffic at the VIP on the
# virtual port. The server listens on every address (the VIP is on lo,
# or tunl0, by lvs-sync realserver), one allocation per client node. For a
# dynamic port, use a masq virtual service: it translates to the instance's
# port. (lvs-sync validate -catalog warns about a gate or ipip instance at
# another port.)
#
# The task is raw_exec running Python's http.server, to be self-contained;
# use your own server and driver.
#
#   nomad job run -var version=2 examples/web.nomad.hcl   # a rolling update

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "version" {
  description = "Changing it rolls the allocations one by one."
  type        = string
  default     = "1"
}

variable "command" {
  description = "The server to run; it must answer HTTP on $NOMAD_PORT_http."
  type        = string
  default     = "python3"
}

variable "args" {
  description = "Without --bind, http.server listens on every address, the VIP's too."
  type        = list(string)
  default     = ["-m", "http.server", "$${NOMAD_PORT_http}"]
}

job "web" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "2s"
    healthy_deadline = "1m"
    auto_revert      = true
  }

  group "web" {
    count = 3

    network {
      port "http" {
        static = 80
      }
    }

    service {
      name     = "web"
      provider = "consul"
      port     = "http"
      tags     = ["prod"]
      meta {
        version = var.version
      }

      check {
        name     = "web http"
        type     = "http"
        path     = "/"
        interval = "1s"
        timeout  = "1s"
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.command
        args    = var.args
      }

      env {
        VERSION = var.version
      }

      # Deregistered from Consul first, stopped this much later.
      shutdown_delay = "3s"
      kill_timeout   = "5s"

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
