# Masterless Puppet for the demo fleet (jiocloud's "enable puppet and let it converge"):
# the demo service at 2.0, restarted when the package changes.
package { 'fleetbook-demo':
  ensure => '2.0',
}
~> service { 'fleetbook-demo':
  ensure => running,
  enable => true,
}
