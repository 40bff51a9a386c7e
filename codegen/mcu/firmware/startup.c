/* edgec test firmware: vector table and reset handler for a bare-metal Cortex-M image.
 * Copies .data from flash, zeroes .bss, enables the FPU where there is one, runs main and
 * exits through semihosting (newlib's rdimon), so qemu-system-arm returns main's status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
extern void initialise_monitor_handles(void);

/* newlib's crt0 is not linked (-nostartfiles): it expects these. */
void _init(void) {}
void _fini(void) {}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, SysTick_Handler,
};

void Default_Handler(void)
{
    exit(99);
}

void Reset_Handler(void)
{
    memcpy(&_sdata, &_sidata, (size_t)((char *)&_edata - (char *)&_sdata));
    memset(&_sbss, 0, (size_t)((char *)&_ebss - (char *)&_sbss));
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11 before any floating-point instruction */
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20);
    __asm volatile("dsb\n\tisb");
#endif
    initialise_monitor_handles();
    exit(main());
}
